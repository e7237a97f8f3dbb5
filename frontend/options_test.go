package frontend

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	df := []byte(`# syntax=127.0.0.1:5000/socikit/dockerfile:test
# socikit:reorder=false
# socikit:span-size=1M
#socikit: startup = ["python3", "/app/main.py"]
# socikit:ready="ready to serve"
# socikit:profile-timeout=90s
FROM base
# a normal comment
RUN true
`)
	o, err := ParseOptions(df, map[string]string{
		"build-arg:SOCIKIT_SPAN_SIZE": "2M", // build args win
		"build-arg:OTHER":             "x",
		"target":                      "app",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"soci-reorder": "false", "soci-span-size": "2M"}
	if !reflect.DeepEqual(o.Attrs, want) {
		t.Errorf("attrs %v, want %v", o.Attrs, want)
	}
	if !reflect.DeepEqual(o.Startup, []string{"python3", "/app/main.py"}) {
		t.Errorf("startup %q", o.Startup)
	}
	if o.Ready != "ready to serve" || o.Timeout != 90*time.Second || !o.Profile || o.Strict {
		t.Errorf("options %+v", o)
	}
}

func TestParseOptionsDefaults(t *testing.T) {
	o, err := ParseOptions([]byte("FROM scratch\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Profile || o.Timeout != DefaultTimeout || len(o.Attrs) != 0 || o.Startup != nil {
		t.Errorf("defaults %+v", o)
	}
	o, err = ParseOptions([]byte("# socikit:startup=python3 -c 'print(1)'\n# socikit:strict=true\n# socikit:profile=false\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Startup, []string{"/bin/sh", "-c", "python3 -c 'print(1)'"}) || !o.Strict || o.Profile {
		t.Errorf("%+v", o)
	}
}

func TestParseOptionsErrors(t *testing.T) {
	for _, c := range []struct {
		df   string
		args map[string]string
		want string
	}{
		{"# socikit:reordr=true\n", nil, `unknown socikit directive "reordr"`},
		{"# socikit:reorder\n", nil, "is not KEY=VALUE"},
		{"# socikit:reorder=maybe\n", nil, `invalid value "maybe"`},
		{"# socikit:profile-timeout=-1s\n", nil, "must be positive"},
		{"# socikit:startup=[1,2]\n", nil, "not a JSON array of strings"},
		{"# socikit:startup=[]\n", nil, "empty command"},
		{"", map[string]string{"build-arg:SOCIKIT_NOPE": "1"}, "unknown socikit build arg SOCIKIT_NOPE"},
	} {
		_, err := ParseOptions([]byte(c.df), c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %v: error %v, want %q", c.df, c.args, err, c.want)
		}
	}
}

func TestStartupCommand(t *testing.T) {
	if got := shellQuote([]string{"sh", "-c", "echo 'hi' there"}); got != `sh -c 'echo '\''hi'\'' there'` {
		t.Errorf("quote %s", got)
	}
}
