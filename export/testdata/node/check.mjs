// Reads Parquet files with hyparquet (an independent implementation) and prints, as one JSON
// line per file: the row count from the footer, the leaf columns with their physical and
// logical types, and the rows read back (decompressed with hyparquet-compressors), so the Go
// test can compare them with what it wrote. Usage: node check.mjs FILE...
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'

const plain = (v) => {
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Date) return v.toISOString()
  return v
}

for (const path of process.argv.slice(2)) {
  const file = await asyncBufferFromFile(path)
  const metadata = await parquetMetadataAsync(file)
  const columns = parquetSchema(metadata).children.map((c) => ({
    name: c.element.name,
    type: c.element.type,
    logical_type: c.element.logical_type ?? null,
    converted_type: c.element.converted_type ?? null,
  }))
  const codecs = [...new Set(metadata.row_groups.flatMap((rg) => rg.columns.map((c) => c.meta_data.codec)))]
  const rows = await parquetReadObjects({ file, metadata, compressors, utf8: true })
  console.log(JSON.stringify({
    path,
    num_rows: Number(metadata.num_rows),
    row_groups: metadata.row_groups.length,
    codecs,
    columns,
    rows: rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, plain(v)]))),
  }, (k, v) => (typeof v === 'bigint' ? v.toString() : v)))
}
