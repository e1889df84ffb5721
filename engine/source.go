package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
	"github.com/quotesdev/quotes/wal"
)

// Source is a recorded input of Replay: a JSONL recording (FileSource), another data
// directory's WAL (WALSource) or a Parquet archive (ArchiveSource).
type Source interface {
	// String names the source in messages and the summary.
	String() string
	// Key is the name under which the WAL records, with every batch, how far into the
	// source the replay got; a re-run resumes from it.
	Key() string
	// Size is the source's size in the units of Batch.Progress (0: unknown).
	Size() int64
	// Read sends the source's messages after pos (nil: from the beginning) to emit in
	// batches of at most size messages, each carrying the position after it. A paced
	// replay (span > 0) also ends a batch before a message more than span nanoseconds of
	// event time after the batch's first. It returns nil at the end of the source.
	Read(ctx context.Context, pos []byte, size int, span int64, emit func(*Batch) error) error
	// Close releases the source.
	Close() error
}

// Batch is a run of messages from a Source.
type Batch struct {
	Msgs []feed.Message
	// Pos is the source's position after the batch (see Source.Key).
	Pos []byte
	// Rejects are the lines of the batch that were rejected, with line numbers.
	Rejects []*feed.DecodeError
	// Progress is how much of Source.Size the batch covers.
	Progress int64
	// Release, if set, is called once Msgs is no longer used.
	Release func()
}

// ErrBadPosition means the position a source's key has in the WAL does not fit the source:
// a different source under the same key, or a corrupt position.
var ErrBadPosition = errors.New("recorded replay position does not fit the source")

// FileSource is a JSONL recording (SPEC §3). Its key is a hash of its first 64 KiB, so a
// renamed or moved recording resumes, and its position records the offset, the line number
// and a checksum of the bytes before the offset, so a different file that merely starts
// the same way is not resumed at a position that does not fit it.
type FileSource struct {
	path string
	f    *os.File
	size int64
	key  string
	// legacyKey is the key of positions written before keys were content hashes.
	legacyKey string
}

// headBytes is how much of a recording its key hashes; tailCheck how many bytes before a
// position its checksum covers.
const (
	headBytes = 64 << 10
	tailCheck = 4 << 10
)

// OpenFileSource opens the recording at path. An empty file is an error: there is nothing
// to replay.
func OpenFileSource(path string) (*FileSource, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("source %q: %w", path, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("source %q: a directory", path)
	}
	if st.Size() == 0 {
		f.Close()
		return nil, fmt.Errorf("source %q: empty file", path)
	}
	head := make([]byte, min(st.Size(), headBytes))
	if _, err := io.ReadFull(f, head); err != nil {
		f.Close()
		return nil, fmt.Errorf("source %q: %w", path, err)
	}
	sum := sha256.Sum256(head)
	return &FileSource{path: path, f: f, size: st.Size(), key: "file:sha256:" + hex.EncodeToString(sum[:16]), legacyKey: "file:" + abs}, nil
}

func (s *FileSource) String() string { return s.path }
func (s *FileSource) Key() string    { return s.key }
func (s *FileSource) Size() int64    { return s.size }
func (s *FileSource) Close() error   { return s.f.Close() }

// tailSum is the checksum of the (up to) tailCheck bytes before offset.
func (s *FileSource) tailSum(offset int64) (uint32, error) {
	n := min(offset, tailCheck)
	b := make([]byte, n)
	if _, err := s.f.ReadAt(b, offset-n); err != nil {
		return 0, err
	}
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)), nil
}

// encodeFilePos is the position after a batch: offset, line, and the tail checksum.
func encodeFilePos(offset, line int64, sum uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(offset))
	b = binary.BigEndian.AppendUint64(b, uint64(line))
	return binary.BigEndian.AppendUint32(b, sum)
}

// decodeFilePos reads a position; hasSum is false for the 16-byte positions of older
// versions (offset and line only).
func decodeFilePos(b []byte) (offset, line int64, sum uint32, hasSum bool, err error) {
	switch len(b) {
	case 16, 20:
	default:
		return 0, 0, 0, false, fmt.Errorf("%w: %d bytes", ErrBadPosition, len(b))
	}
	offset, line = int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))
	if len(b) == 20 {
		return offset, line, binary.BigEndian.Uint32(b[16:]), true, nil
	}
	return offset, line, 0, false, nil
}

func (s *FileSource) Read(ctx context.Context, pos []byte, size int, span int64, emit func(*Batch) error) error {
	var offset, line int64
	if pos != nil {
		var sum uint32
		var hasSum bool
		var err error
		if offset, line, sum, hasSum, err = decodeFilePos(pos); err != nil {
			return fmt.Errorf("source %s: %w", s.path, err)
		}
		if offset > s.size {
			return fmt.Errorf("source %s is shorter (%d bytes) than what was already replayed from it (%d bytes): %w", s.path, s.size, offset, ErrBadPosition)
		}
		if hasSum {
			have, err := s.tailSum(offset)
			if err != nil {
				return fmt.Errorf("source %s: %w", s.path, err)
			}
			if have != sum {
				return fmt.Errorf("source %s: the bytes before offset %d differ from those replayed under the same key: %w", s.path, offset, ErrBadPosition)
			}
		}
	}
	if _, err := s.f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s to %d: %w", s.path, offset, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *fileBatch, 2)
	const buffers = 16 // reading, and up to 8 queued per stage of the pipeline.Writer
	free := make(chan *fileBatch, buffers)
	for i := 0; i < buffers; i++ {
		free <- &fileBatch{msgs: make([]feed.Message, 0, size)}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		readBatches(ctx, feed.NewRecordingReaderAt(s.f, offset, line), size, span, batches, free)
	}()
	defer func() { cancel(); <-done }()
	last := offset
	for b := range batches {
		if b.err != nil {
			return fmt.Errorf("read %s: %w", s.path, b.err)
		}
		sum, err := s.tailSum(b.offset)
		if err != nil {
			return fmt.Errorf("read %s: %w", s.path, err)
		}
		batch := &Batch{Msgs: b.msgs, Rejects: b.rejects, Pos: encodeFilePos(b.offset, b.line, sum), Progress: b.offset - last}
		b := b
		batch.Release = func() {
			b.msgs, b.rejects = b.msgs[:0], b.rejects[:0]
			free <- b
		}
		last = b.offset
		if err := emit(batch); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// fileBatch is a batch of decoded messages and where in the file it ends.
type fileBatch struct {
	msgs         []feed.Message
	offset, line int64
	rejects      []*feed.DecodeError
	err          error
}

// readBatches decodes rr into batches of up to size messages. A paced replay (span > 0)
// also starts a new batch when a message is more than span of event time after its batch's
// first, so that the pacer, which holds each batch until its first message is due, releases
// no message more than span early.
func readBatches(ctx context.Context, rr *feed.RecordingReader, size int, span int64, out chan<- *fileBatch, free chan *fileBatch) {
	defer close(out)
	send := func(b *fileBatch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var b *fileBatch
	for {
		if b == nil {
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
		}
		offset, line := rr.Offset(), rr.Line()
		var m feed.Message
		err := rr.Next(&m)
		switch {
		case err == nil:
			if span > 0 && len(b.msgs) > 0 && m.TS-b.msgs[0].TS > span {
				b.offset, b.line = offset, line
				if !send(b) {
					return
				}
				select {
				case b = <-free:
				case <-ctx.Done():
					return
				}
			}
			b.msgs = append(b.msgs, m)
		case errors.Is(err, io.EOF):
			b.offset, b.line = rr.Offset(), rr.Line()
			if len(b.msgs) > 0 || len(b.rejects) > 0 {
				send(b)
			}
			return
		default:
			de := asDecodeError(err)
			if de == nil {
				b.err = err
				send(b)
				return
			}
			b.rejects = append(b.rejects, de)
		}
		if len(b.msgs) >= size || len(b.rejects) >= size {
			b.offset, b.line = rr.Offset(), rr.Line()
			if !send(b) {
				return
			}
			b = nil
		}
	}
}

// WALSource is another data directory's WAL: its records, ticks included, in order, so the
// result equals the original run's.
type WALSource struct {
	dir string
	log *wal.Log
}

// IsDataDir reports whether dir is a quotes data directory (it has wal/MANIFEST).
func IsDataDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "wal", "MANIFEST"))
	return err == nil
}

// OpenWALSource opens the WAL of the data directory dir for reading.
func OpenWALSource(dir string) (*WALSource, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", dir, err)
	}
	if !IsDataDir(abs) {
		return nil, fmt.Errorf("source %q: a directory but not a quotes data directory (no wal/MANIFEST)", dir)
	}
	wopts := wal.DefaultOptions(filepath.Join(abs, "wal"))
	log, err := wal.Open(wopts)
	if err != nil {
		if isLockError(err) {
			return nil, fmt.Errorf("source %q is in use by a running quotes process: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open source WAL %s: %w", dir, err)
	}
	return &WALSource{dir: abs, log: log}, nil
}

func (s *WALSource) String() string { return s.dir }
func (s *WALSource) Key() string    { return "wal:" + filepath.Join(s.dir, "wal") }
func (s *WALSource) Size() int64    { return int64(s.log.LastSeq()) }
func (s *WALSource) Close() error   { return s.log.Close() }

func (s *WALSource) Read(ctx context.Context, pos []byte, size int, _ int64, emit func(*Batch) error) error {
	next, err := seqPos(pos)
	if err != nil {
		return fmt.Errorf("source %s: %w", s.dir, err)
	}
	next++
	if first := s.log.FirstSeq(); first > next {
		return fmt.Errorf("source %s: its WAL starts at seq %d, retention removed %d…%d", s.dir, first, next, first-1)
	}
	r := s.log.NewReader(next)
	msgs := make([]feed.Message, 0, size)
	var seq uint64
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		b := &Batch{Msgs: msgs, Pos: binary.BigEndian.AppendUint64(nil, seq), Progress: int64(len(msgs))}
		msgs = make([]feed.Message, 0, size)
		return emit(b)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read source WAL %s: %w", s.dir, err)
		}
		seq = rec.Seq
		msgs = append(msgs, rec.Message)
		if len(msgs) == size {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// seqPos decodes a position that is a sequence number (0 for none).
func seqPos(pos []byte) (uint64, error) {
	if pos == nil {
		return 0, nil
	}
	if len(pos) != 8 {
		return 0, fmt.Errorf("%w: %d bytes", ErrBadPosition, len(pos))
	}
	return binary.BigEndian.Uint64(pos), nil
}

// ArchiveSource is a Parquet archive (a directory or s3://bucket/prefix): its raw quotes
// and instrument events in their original WAL order (no ticks: minutes close by event
// time, and at the end). Its position is the last archived sequence replayed.
type ArchiveSource struct {
	st export.ArchiveStore
	to int64 // if not 0, only messages before it (backfill's rebuild)
}

// IsArchiveDir reports whether dir looks like a Parquet archive: it holds quotes/ or
// events/ and is not a data directory.
func IsArchiveDir(dir string) bool {
	if IsDataDir(dir) {
		return false
	}
	for _, d := range []string{export.DatasetQuotes, export.DatasetEvents} {
		if st, err := os.Stat(filepath.Join(dir, d)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// NewArchiveSource replays the archive in st.
func NewArchiveSource(st export.ArchiveStore) *ArchiveSource { return &ArchiveSource{st: st} }

func (s *ArchiveSource) String() string { return s.st.String() }
func (s *ArchiveSource) Key() string    { return "archive:" + s.st.String() }
func (s *ArchiveSource) Size() int64    { return 0 }
func (s *ArchiveSource) Close() error   { return nil }

func (s *ArchiveSource) Read(ctx context.Context, pos []byte, size int, _ int64, emit func(*Batch) error) error {
	after, err := seqPos(pos)
	if err != nil {
		return fmt.Errorf("source %s: %w", s.st, err)
	}
	msgs := make([]feed.Message, 0, size)
	var last uint64
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		b := &Batch{Msgs: msgs, Pos: binary.BigEndian.AppendUint64(nil, last)}
		msgs = make([]feed.Message, 0, size)
		return emit(b)
	}
	tr := export.TimeRange{}
	if s.to != 0 {
		tr = export.TimeRange{From: math.MinInt64, To: s.to}
	}
	err = export.ReadArchiveMessages(ctx, s.st, tr, after, func(r record.Record) error {
		msgs = append(msgs, r.Message)
		last = r.Seq
		if len(msgs) == size {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay archive %s: %w", s.st, err)
	}
	return flush()
}

// SourceOptions say what OpenSources must not replay into itself, and how to reach S3.
type SourceOptions struct {
	// DataDir is the --data being replayed into; Archive the --archive being written.
	DataDir, Archive string
	// S3 configures s3:// sources.
	S3 export.S3Options
}

// SourceError is a SOURCE argument that cannot be replayed (a usage error): missing, empty,
// not a recording, data directory or archive, or the replay's own --data or --archive.
type SourceError struct {
	Arg string
	Err error
}

func (e *SourceError) Error() string {
	if msg := e.Err.Error(); strings.HasPrefix(msg, "source ") {
		return msg // OpenFileSource and OpenWALSource name the source themselves
	}
	return fmt.Sprintf("source %q: %v", e.Arg, e.Err)
}
func (e *SourceError) Unwrap() error { return e.Err }

// OpenSources opens replay SOURCE arguments: an s3:// prefix or a directory holding an
// archive (ArchiveSource), another data directory (WALSource), or a JSONL recording
// (FileSource). Every problem is found before anything is created; on an error the sources
// opened so far are closed.
func OpenSources(args []string, opts SourceOptions) ([]Source, error) {
	var out []Source
	fail := func(err error) ([]Source, error) {
		for _, s := range out {
			s.Close()
		}
		return nil, err
	}
	dataAbs, _ := filepath.Abs(opts.DataDir)
	archiveAbs := ""
	if opts.Archive != "" && !export.IsS3URL(opts.Archive) {
		archiveAbs, _ = filepath.Abs(opts.Archive)
	}
	for _, a := range args {
		if export.IsS3URL(a) {
			if a == opts.Archive {
				return fail(&SourceError{a, errors.New("it is the --archive itself")})
			}
			st, err := OpenArchive(a, opts.S3)
			if err != nil {
				return fail(&SourceError{a, err})
			}
			out = append(out, NewArchiveSource(st))
			continue
		}
		abs, err := filepath.Abs(a)
		if err != nil {
			return fail(&SourceError{a, err})
		}
		st, err := os.Stat(abs)
		if err != nil {
			return fail(&SourceError{a, errors.Unwrap(err)})
		}
		switch {
		case st.IsDir() && abs == dataAbs:
			return fail(&SourceError{a, errors.New("it is the --data directory itself")})
		case st.IsDir() && IsArchiveDir(abs):
			if abs == archiveAbs {
				return fail(&SourceError{a, errors.New("it is the --archive itself")})
			}
			as, err := OpenArchive(abs, opts.S3)
			if err != nil {
				return fail(&SourceError{a, err})
			}
			out = append(out, NewArchiveSource(as))
		case st.IsDir():
			ws, err := OpenWALSource(abs)
			if errors.Is(err, ErrLocked) {
				return fail(err)
			}
			if err != nil {
				return fail(&SourceError{a, err})
			}
			out = append(out, ws)
		default:
			fs, err := OpenFileSource(a)
			if err != nil {
				return fail(&SourceError{a, err})
			}
			out = append(out, fs)
		}
	}
	return out, nil
}

// asDecodeError returns err as a *feed.DecodeError (a rejected line), or nil. It keeps
// errors.As's target out of readBatches's loop: declared there, it escaped to the heap
// once per message read (240 MB of garbage per 30M quotes).
func asDecodeError(err error) *feed.DecodeError {
	var de *feed.DecodeError
	if errors.As(err, &de) {
		return de
	}
	return nil
}
