package s3test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestStartPutGetRestart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	c := s.Client(t)
	if _, err := c.PutObject(ctx, Bucket, "a/b.txt", bytes.NewReader([]byte("hello")), 5, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if _, err := c.StatObject(ctx, Bucket, "a/b.txt", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat succeeded on a killed server")
	}
	s.Restart(t)
	obj, err := c.GetObject(ctx, Bucket, "a/b.txt", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil || string(b) != "hello" {
		t.Fatalf("got %q, %v", b, err)
	}
}
