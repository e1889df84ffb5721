package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ArchiveStore is where archive files go: a local directory (DirStore) or an S3 bucket
// prefix (S3Store). Keys are slash-separated paths relative to the archive root, e.g.
// "quotes/date=2026-11-26/hour=13/part-1-52311.parquet".
//
// A file is built locally first (Stage), then made visible under its key in one atomic step
// (Publish): a reader of the store never sees a partial file, and publishing the same key
// again replaces the object as a whole.
type ArchiveStore interface {
	// Stage returns a new empty local file to build an object in.
	Stage() (*os.File, error)
	// Publish makes the staged file f visible under key, atomically, replacing any object
	// of that key. f is closed and removed whether or not Publish succeeds.
	Publish(ctx context.Context, f *os.File, key string) error
	// Discard closes and removes a staged file that will not be published.
	Discard(f *os.File)
	// List returns the keys under prefix (a key prefix such as "quotes/"), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Open returns the object under key for reading; the caller closes it.
	Open(ctx context.Context, key string) (ArchiveObject, error)
	// Cleanup removes what interrupted publishes left behind (staged files, incomplete
	// multipart uploads). Nothing it removes was ever visible.
	Cleanup(ctx context.Context) error
	// String names the store for logs and errors.
	String() string
}

// ArchiveObject is an object opened for reading.
type ArchiveObject interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// DirStore keeps the archive in a local directory. Publish is tmp + fsync + rename + fsync
// of the directory: after Publish returns the file survives a machine crash, and before the
// rename it is only a hidden staging file, which Cleanup removes.
type DirStore struct {
	root string
}

// stagingDir is the DirStore's directory for files being built: inside the root (so that
// the rename is atomic, on the same file system) and hidden (a leading dot: query engines
// and *.parquet globs skip it).
const stagingDir = ".staging"

// NewDirStore returns a store rooted at dir, creating it.
func NewDirStore(dir string) (*DirStore, error) {
	if dir == "" {
		return nil, errors.New("archive: empty directory")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, stagingDir), 0o755); err != nil {
		return nil, fmt.Errorf("archive: create %s: %w", dir, err)
	}
	return &DirStore{root: dir}, nil
}

func (s *DirStore) String() string { return s.root }

// Stage implements ArchiveStore.
func (s *DirStore) Stage() (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, stagingDir), "part-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("archive: stage in %s: %w", s.root, err)
	}
	return f, nil
}

// Discard implements ArchiveStore.
func (s *DirStore) Discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// Publish implements ArchiveStore.
func (s *DirStore) Publish(_ context.Context, f *os.File, key string) error {
	defer s.Discard(f) // after a successful rename this removes nothing
	if err := f.Sync(); err != nil {
		return fmt.Errorf("archive: fsync %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("archive: close %s: %w", key, err)
	}
	dst := filepath.Join(s.root, filepath.FromSlash(key))
	if err := mkdirAllSync(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("archive: %s: %w", key, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("archive: publish %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("archive: publish %s: %w", key, err)
	}
	return nil
}

// mkdirAllSync creates dir and its missing parents, fsyncing each parent that got a new
// entry, so that a published file's directory survives a machine crash too.
func mkdirAllSync(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirAllSync(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// List implements ArchiveStore.
func (s *DirStore) List(_ context.Context, prefix string) ([]string, error) {
	var keys []string
	base := filepath.Join(s.root, filepath.FromSlash(prefix))
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if d.Name() == stagingDir {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		keys = append(keys, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("archive: list %s: %w", base, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// dirObject is an opened local file.
type dirObject struct {
	*os.File
	size int64
}

func (o dirObject) Size() int64 { return o.size }

// Open implements ArchiveStore.
func (s *DirStore) Open(_ context.Context, key string) (ArchiveObject, error) {
	f, err := os.Open(filepath.Join(s.root, filepath.FromSlash(key)))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("archive: %w", err)
	}
	return dirObject{File: f, size: st.Size()}, nil
}

// Cleanup implements ArchiveStore: it empties the staging directory.
func (s *DirStore) Cleanup(context.Context) error {
	dir := filepath.Join(s.root, stagingDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("archive: cleanup: %w", err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("archive: cleanup: %w", err)
		}
	}
	return nil
}

// DefaultPartSize is the default of S3Options.PartSize: objects up to this size are one
// PUT, larger ones a multipart upload of parts this size.
const DefaultPartSize = 64 << 20

// MinPartSize is the smallest part S3 accepts (except for the last part).
const MinPartSize = 5 << 20

// S3Options configure an S3Store.
type S3Options struct {
	// Bucket and Prefix locate the archive: objects are Prefix + "/" + key (no leading
	// slash; Prefix may be empty).
	Bucket, Prefix string
	// Endpoint is the server as a URL (http://127.0.0.1:7070 or https://s3.example.com);
	// empty means AWS (https://s3.amazonaws.com, virtual-hosted–style addressing). With an
	// explicit endpoint, requests use path-style addressing, which S3-compatible stores
	// expect.
	Endpoint string
	// Region is the bucket's region (for request signing); empty lets the client find out.
	Region string
	// Credentials sign the requests; nil means anonymous. cmd builds them from the standard
	// AWS environment and files (see AWSCredentials).
	Credentials *credentials.Credentials
	// PartSize is the multipart part size (DefaultPartSize when zero, at least MinPartSize).
	PartSize int64
	// TempDir holds staged files (os.TempDir() when empty).
	TempDir string
}

// AWSCredentials returns the standard AWS credential chain: the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the shared credentials file
// (~/.aws/credentials, AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE) and the EC2/ECS instance
// role. The providers read the environment when asked for credentials, so only cmd should
// call this.
func AWSCredentials() *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
}

// S3Store keeps the archive under a prefix of an S3 bucket. Publish is one PUT for objects
// up to PartSize, otherwise a multipart upload that is completed only after every part was
// uploaded and is aborted on any failure: S3 makes an object visible only on a successful
// PUT or CompleteMultipartUpload, whole, so a crash at any moment leaves no partial object
// (an abandoned multipart upload is invisible; Cleanup aborts those under the prefix).
type S3Store struct {
	core     *minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64
	tempDir  string

	testPartHook func(part int) // tests: runs before each part of a multipart upload
}

// ParseS3URL splits s3://bucket/prefix.
func ParseS3URL(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("archive: %q: want s3://bucket/prefix", s)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// NewS3Store returns a store for opts. It does not contact the server.
func NewS3Store(opts S3Options) (*S3Store, error) {
	if opts.Bucket == "" {
		return nil, errors.New("archive: s3: empty bucket")
	}
	host, secure, lookup := "s3.amazonaws.com", true, minio.BucketLookupAuto
	if opts.Endpoint != "" {
		u, err := url.Parse(opts.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("archive: s3 endpoint %q: want http://host:port or https://host", opts.Endpoint)
		}
		host, secure, lookup = u.Host, u.Scheme == "https", minio.BucketLookupPath
	}
	switch {
	case opts.PartSize == 0:
		opts.PartSize = DefaultPartSize
	case opts.PartSize < MinPartSize:
		return nil, fmt.Errorf("archive: s3 part size %d: at least %d", opts.PartSize, MinPartSize)
	}
	creds := opts.Credentials
	if creds == nil {
		creds = credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	}
	core, err := minio.NewCore(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       opts.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("archive: s3 client for %s: %w", host, err)
	}
	prefix := strings.Trim(opts.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3Store{core: core, bucket: opts.Bucket, prefix: prefix, partSize: opts.PartSize, tempDir: opts.TempDir}, nil
}

func (s *S3Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Stage implements ArchiveStore.
func (s *S3Store) Stage() (*os.File, error) {
	f, err := os.CreateTemp(s.tempDir, "quotes-archive-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("archive: stage: %w", err)
	}
	return f, nil
}

// Discard implements ArchiveStore.
func (s *S3Store) Discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// Publish implements ArchiveStore.
func (s *S3Store) Publish(ctx context.Context, f *os.File, key string) error {
	defer s.Discard(f)
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive: %s: %w", key, err)
	}
	size, object := st.Size(), s.prefix+key
	opts := minio.PutObjectOptions{ContentType: "application/vnd.apache.parquet", DisableMultipart: true}
	if size <= s.partSize {
		_, err := s.core.Client.PutObject(ctx, s.bucket, object, io.NewSectionReader(f, 0, size), size, opts)
		if err != nil {
			return fmt.Errorf("archive: put %s: %w", s.objectURL(object), err)
		}
		return nil
	}
	return s.multipart(ctx, f, size, object, opts)
}

// multipart uploads f in parts and completes the upload only when all parts are there;
// on any error (or cancellation) it aborts the upload.
func (s *S3Store) multipart(ctx context.Context, f *os.File, size int64, object string, opts minio.PutObjectOptions) (err error) {
	opts.DisableMultipart = false
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, object, opts)
	if err != nil {
		return fmt.Errorf("archive: start multipart upload of %s: %w", s.objectURL(object), err)
	}
	defer func() {
		if err != nil {
			// A fresh context: the upload must be aborted even when ctx was cancelled.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			if aerr := s.core.AbortMultipartUpload(actx, s.bucket, object, id); aerr != nil {
				err = fmt.Errorf("%w (abort: %v; Cleanup removes it later)", err, aerr)
			}
		}
	}()
	var parts []minio.CompletePart
	for off, n := int64(0), 1; off < size; off, n = off+s.partSize, n+1 {
		if s.testPartHook != nil {
			s.testPartHook(n)
		}
		l := min(s.partSize, size-off)
		p, err := s.core.PutObjectPart(ctx, s.bucket, object, id, n, io.NewSectionReader(f, off, l), l, minio.PutObjectPartOptions{})
		if err != nil {
			return fmt.Errorf("archive: upload part %d of %s: %w", n, s.objectURL(object), err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, object, id, parts, opts); err != nil {
		return fmt.Errorf("archive: complete multipart upload of %s: %w", s.objectURL(object), err)
	}
	return nil
}

const abortTimeout = 30e9 // 30s

func (s *S3Store) objectURL(object string) string { return "s3://" + s.bucket + "/" + object }

// List implements ArchiveStore.
func (s *S3Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for obj := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("archive: list %s: %w", s.objectURL(s.prefix+prefix), obj.Err)
		}
		keys = append(keys, strings.TrimPrefix(obj.Key, s.prefix))
	}
	slices.Sort(keys)
	return keys, nil
}

// Open implements ArchiveStore: the object is downloaded into a temporary file (Parquet
// readers make many small reads; one GET is cheaper than a ranged GET per read).
func (s *S3Store) Open(ctx context.Context, key string) (ArchiveObject, error) {
	obj, err := s.core.Client.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("archive: get %s: %w", s.objectURL(s.prefix+key), err)
	}
	defer obj.Close()
	f, err := s.Stage()
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(f, obj)
	if err != nil {
		s.Discard(f)
		return nil, fmt.Errorf("archive: get %s: %w", s.objectURL(s.prefix+key), err)
	}
	os.Remove(f.Name()) // unlinked: the data stays until Close
	return dirObject{File: f, size: n}, nil
}

// Cleanup implements ArchiveStore: it aborts the incomplete multipart uploads under the
// prefix (left by a process killed during an upload).
func (s *S3Store) Cleanup(ctx context.Context) error {
	for u := range s.core.Client.ListIncompleteUploads(ctx, s.bucket, s.prefix, true) {
		if u.Err != nil {
			return fmt.Errorf("archive: list incomplete uploads in %s: %w", s, u.Err)
		}
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil {
			return fmt.Errorf("archive: abort upload of %s: %w", s.objectURL(u.Key), err)
		}
	}
	return nil
}

// OpenArchiveStore returns the store for an --archive value: s3://bucket/prefix (with opts
// for the endpoint, region, credentials) or a local directory.
func OpenArchiveStore(target string, opts S3Options) (ArchiveStore, error) {
	if strings.HasPrefix(target, "s3://") {
		bucket, prefix, err := ParseS3URL(target)
		if err != nil {
			return nil, err
		}
		opts.Bucket, opts.Prefix = bucket, prefix
		return NewS3Store(opts)
	}
	if strings.Contains(target, "://") {
		return nil, fmt.Errorf("archive: %q: want a directory or s3://bucket/prefix", target)
	}
	return NewDirStore(target)
}

// IsS3URL reports whether target names an S3 archive.
func IsS3URL(target string) bool { return strings.HasPrefix(target, "s3://") }

// keyPath joins key parts with slashes.
func keyPath(parts ...string) string { return path.Join(parts...) }
