package export

import (
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// ExternalColumn is one column of an external table: its name, ClickHouse type and values
// (a slice of the Go type clickhouse-go maps to that type).
type ExternalColumn struct {
	Name, Type string
	Values     any
}

// ExternalTable builds the external table name from cols, for INSERT … SELECT … FROM name:
// the one insert path that works on ClickHouse 18.16 as on current releases (18.16 ignores
// data inline in a native-protocol query, and clickhouse-go's batch inserts get an empty
// header from it). The table travels as one binary block.
func ExternalTable(name string, cols ...ExternalColumn) (*ext.Table, error) {
	defs := make([]func(*ext.Table) error, len(cols))
	for i, c := range cols {
		defs[i] = ext.Column(c.Name, column.Type(c.Type))
	}
	tbl, err := ext.NewTable(name, defs...)
	if err != nil {
		return nil, fmt.Errorf("external table %s: %w", name, err)
	}
	block := tbl.Block().Columns
	for i, c := range cols {
		if _, err := block[i].Append(c.Values); err != nil {
			return nil, fmt.Errorf("external table %s: column %s: %w", name, c.Name, err)
		}
	}
	return tbl, nil
}
