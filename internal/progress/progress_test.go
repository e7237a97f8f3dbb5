package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{Auto, Bars, Plain, Quiet} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("fancy"); err == nil {
		t.Error("ParseMode(fancy): no error")
	}
}

// run feeds three items through a Progress in mode m: two done, one
// aborted, one left to Wait.
func run(t *testing.T, m Mode) (string, Mode) {
	t.Helper()
	var buf bytes.Buffer
	p := New(&buf, m)
	var wg sync.WaitGroup
	for i, name := range []string{"layer a", "layer b", "layer c"} {
		it := p.Add(name, 1000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int64(0); n <= 1000; n += 100 {
				it.SetCurrent(n)
			}
			switch i {
			case 0:
				it.Done("indexed, %d spans", 3)
			case 1:
				it.Abort()
			}
		}()
	}
	wg.Wait()
	p.Printf("index %s", "sha256:x")
	p.Warnf("warning: %s", "careful")
	p.Add("layer d", 10) // never finished
	p.Wait()
	return buf.String(), p.Mode()
}

func TestPlain(t *testing.T) {
	out, mode := run(t, Auto) // a buffer is no terminal
	if mode != Plain {
		t.Fatalf("Auto on a buffer is %v", mode)
	}
	want := "layer a: indexed, 3 spans\nindex sha256:x\nwarning: careful\n"
	if out != want {
		t.Errorf("plain output %q, want %q", out, want)
	}
}

func TestQuiet(t *testing.T) {
	out, _ := run(t, Quiet)
	if out != "warning: careful\n" {
		t.Errorf("quiet output %q", out)
	}
}

func TestBars(t *testing.T) {
	out, mode := run(t, Bars)
	if mode != Bars {
		t.Fatalf("mode %v", mode)
	}
	for _, s := range []string{"layer a: indexed, 3 spans\n", "index sha256:x\n", "warning: careful\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("bars output lacks %q:\n%s", s, out)
		}
	}
}
