package feed

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// DefaultMaxLine is the default longest recorded line a RecordingReader accepts: 1 MiB.
const DefaultMaxLine = 1 << 20

// recordingBufSize is the size of the read and write buffers of recordings.
const recordingBufSize = 128 << 10

// RecordingWriter writes Messages as recorded JSONL (SPEC §3), one line each, buffered.
// Call Flush when done. It is not safe for concurrent use.
type RecordingWriter struct {
	w   *bufio.Writer
	buf []byte
}

// NewRecordingWriter returns a RecordingWriter writing to w through a large buffer.
func NewRecordingWriter(w io.Writer) *RecordingWriter {
	return &RecordingWriter{w: bufio.NewWriterSize(w, recordingBufSize), buf: make([]byte, 0, 256)}
}

// Write appends m as one recorded line (see AppendRecordingLine). A message whose Kind is
// not ADD, DELETE or QUOTE is refused, since it could not be read back.
func (w *RecordingWriter) Write(m *Message) error {
	switch m.Kind {
	case KindAdd, KindDelete, KindQuote:
	default:
		return fmt.Errorf("feed: write recording line: invalid message kind %v", m.Kind)
	}
	w.buf = AppendRecordingLine(w.buf[:0], m)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("feed: write recording line: %w", err)
	}
	return nil
}

// Flush writes any buffered lines to the underlying writer.
func (w *RecordingWriter) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("feed: flush recording: %w", err)
	}
	return nil
}

// RecordingReader reads recorded JSONL (SPEC §3) line by line, in constant memory.
//
// Next returns nil for a good line, a *DecodeError (with Line set) for a rejected line, after
// which reading may continue, and io.EOF at the end. Empty (or blank) lines are skipped
// silently but counted in line numbers; "\r\n" line endings are accepted; a last line
// without a newline is read too. A line longer than MaxLine bytes (without its line ending)
// is rejected with ReasonOversized and skipped without being held in memory.
//
// Decoding a QUOTE line allocates nothing. A RecordingReader is not safe for concurrent use.
type RecordingReader struct {
	// MaxLine is the longest line accepted, in bytes without the line ending. 0 means
	// DefaultMaxLine. Set it before the first call to Next.
	MaxLine int

	r    *bufio.Reader
	dec  Decoder
	long []byte // assembles lines longer than the read buffer

	readLine   int64 // lines consumed, empty ones included
	readOffset int64 // bytes consumed
	line       int64 // Line(): number of the last line returned
	offset     int64 // Offset(): byte offset just after the last line returned
}

// NewRecordingReader returns a RecordingReader reading r from its beginning.
func NewRecordingReader(r io.Reader) *RecordingReader {
	return NewRecordingReaderAt(r, 0, 0)
}

// NewRecordingReaderAt returns a RecordingReader resuming a recording: r must already be
// positioned at byte offset, which is the Offset() of an earlier reader whose Line() was
// line. The next line read is numbered line+1, and Offset() counts from the file's start.
func NewRecordingReaderAt(r io.Reader, offset, line int64) *RecordingReader {
	return &RecordingReader{
		r:          bufio.NewReaderSize(r, recordingBufSize),
		readLine:   line,
		readOffset: offset,
		line:       line,
		offset:     offset,
	}
}

// Line returns the 1-based line number of the last line returned by Next (good or
// rejected), 0 before the first.
func (rr *RecordingReader) Line() int64 { return rr.line }

// Offset returns the byte offset just after the last line returned by Next (its line ending
// included): where to resume with NewRecordingReaderAt.
func (rr *RecordingReader) Offset() int64 { return rr.offset }

// Next decodes the next non-empty line into m. It returns nil, a *DecodeError for a rejected
// line (m is then unchanged and reading may continue), io.EOF at the end of the input, or a
// wrapped read error.
func (rr *RecordingReader) Next(m *Message) error {
	maxLine := rr.MaxLine
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	for {
		line, size, err := rr.next(maxLine)
		if err != nil {
			if err == io.EOF {
				return io.EOF
			}
			return fmt.Errorf("feed: read recording line %d: %w", rr.readLine+1, err)
		}
		rr.readLine++
		rr.readOffset += int64(size)
		if line == nil { // too long
			rr.line, rr.offset = rr.readLine, rr.readOffset
			return &DecodeError{Reason: ReasonOversized, Line: rr.line,
				Detail: "line longer than " + strconv.Itoa(maxLine) + " bytes"}
		}
		line = trimSpace(line)
		if len(line) == 0 {
			continue
		}
		rr.line, rr.offset = rr.readLine, rr.readOffset
		if err := rr.dec.DecodeRecorded(line, m); err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.Line = rr.line
				return de
			}
			return err
		}
		return nil
	}
}

// next reads one line and returns it without its '\n', together with its size in bytes
// including the '\n'. A line longer than maxLine is consumed and returned as nil with a
// nil error. At the end of the input it returns io.EOF.
func (rr *RecordingReader) next(maxLine int) ([]byte, int, error) {
	b, err := rr.r.ReadSlice('\n')
	switch {
	case err == nil:
		if contentLen(b) > maxLine {
			return nil, len(b), nil
		}
		return b[:len(b)-1], len(b), nil
	case err == io.EOF:
		if len(b) == 0 {
			return nil, 0, io.EOF
		}
		if contentLen(b) > maxLine {
			return nil, len(b), nil
		}
		return b, len(b), nil
	case err != bufio.ErrBufferFull:
		return nil, 0, err
	}
	// A line longer than the buffer: assemble it, or skip it once it is known too long.
	size := len(b)
	tooLong := len(b) > maxLine+1 // +1: a '\r' may still precede the '\n'
	rr.long = rr.long[:0]
	if !tooLong {
		rr.long = append(rr.long, b...)
	}
	for {
		b, err = rr.r.ReadSlice('\n')
		size += len(b)
		if !tooLong {
			if len(rr.long)+len(b) > maxLine+2 {
				tooLong = true
			} else {
				rr.long = append(rr.long, b...)
			}
		}
		switch {
		case err == nil || err == io.EOF:
			if tooLong || contentLen(rr.long) > maxLine {
				return nil, size, nil
			}
			line := rr.long
			if err == nil {
				line = line[:len(line)-1]
			}
			return line, size, nil
		case err != bufio.ErrBufferFull:
			return nil, 0, err
		}
	}
}

// contentLen is the length of line without its "\n" or "\r\n" ending.
func contentLen(b []byte) int {
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		if n > 0 && b[n-1] == '\r' {
			n--
		}
	}
	return n
}

// trimSpace trims JSON whitespace (space, tab, CR, LF) from both ends of b.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
