package ztoc

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSchema checks that ztoc.fbs, the schema checked in beside the
// hand-written reader and writer, declares the fields of each table in the
// order of marshal.go's slot constants (a field's id is its position).
func TestSchema(t *testing.T) {
	b, err := os.ReadFile("ztoc.fbs")
	if err != nil {
		t.Fatal(err)
	}
	got := parseTables(t, string(b))
	want := map[string][]string{
		"Ztoc": slots(ztocNumFields, map[int]string{
			ztocSlotVersion:          "version",
			ztocSlotBuildTool:        "build_tool_identifier",
			ztocSlotCompressedSize:   "compressed_archive_size",
			ztocSlotUncompressedSize: "uncompressed_archive_size",
			ztocSlotTOC:              "toc",
			ztocSlotCompressionInfo:  "compression_info",
		}),
		"TOC": slots(tocNumFields, map[int]string{tocSlotMetadata: "metadata"}),
		"CompressionInfo": slots(ciNumFields, map[int]string{
			ciSlotAlgorithm:   "compression_algorithm",
			ciSlotMaxSpanID:   "max_span_id",
			ciSlotSpanDigests: "span_digests",
			ciSlotCheckpoints: "checkpoints",
		}),
		"FileMetadata": slots(fmNumFields, map[int]string{
			fmSlotName:     "name",
			fmSlotType:     "type",
			fmSlotOffset:   "uncompressed_offset",
			fmSlotSize:     "uncompressed_size",
			fmSlotLinkname: "linkname",
			fmSlotMode:     "mode",
			fmSlotUID:      "uid",
			fmSlotGID:      "gid",
			fmSlotUname:    "uname",
			fmSlotGname:    "gname",
			fmSlotModTime:  "mod_time",
			fmSlotDevmajor: "devmajor",
			fmSlotDevminor: "devminor",
			fmSlotXattrs:   "xattrs",
		}),
		"Xattr": slots(xattrNumFields, map[int]string{xattrSlotKey: "key", xattrSlotValue: "value"}),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ztoc.fbs tables and fields (-slot constants +schema):\n%s", d)
	}
	if !regexp.MustCompile(`(?m)^root_type Ztoc;$`).Match(b) {
		t.Error("ztoc.fbs: no root_type Ztoc")
	}
	if !regexp.MustCompile(`(?m)^enum CompressionAlgorithm : byte \{ Gzip = 1, Uncompressed \}$`).Match(b) ||
		Gzip != 1 || Uncompressed != 2 {
		t.Error("ztoc.fbs: CompressionAlgorithm differs from Gzip = 1, Uncompressed = 2")
	}
}

// slots returns the field names by slot, "" for a slot without a constant.
func slots(n int, names map[int]string) []string {
	s := make([]string, n)
	for i, name := range names {
		s[i] = name
	}
	return s
}

// parseTables returns the field names of each table of a flatbuffers
// schema, in declaration order.
func parseTables(t *testing.T, schema string) map[string][]string {
	t.Helper()
	schema = regexp.MustCompile(`//[^\n]*`).ReplaceAllString(schema, "")
	tables := map[string][]string{}
	for _, m := range regexp.MustCompile(`table\s+(\w+)\s*\{([^}]*)\}`).FindAllStringSubmatch(schema, -1) {
		var fields []string
		for _, f := range strings.Split(m[2], ";") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			name, _, ok := strings.Cut(f, ":")
			if !ok {
				t.Fatalf("ztoc.fbs: table %s: field %q has no type", m[1], f)
			}
			fields = append(fields, strings.TrimSpace(name))
		}
		tables[m[1]] = fields
	}
	return tables
}
