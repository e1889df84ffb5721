//go:build !unix

package engine

import (
	"errors"
	"os"
)

// mapFile is not available here: recordings are read with read(2).
func mapFile(*os.File, int64) ([]byte, func() error, error) {
	return nil, nil, errors.ErrUnsupported
}
