package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/frontend/trace"
	"github.com/socikit/socikit/profile"
)

// Where the profiling exec mounts the tracer and its output. Both are
// outside the image: the exec's rootfs changes are thrown away.
const (
	tracerDir = "/.socikit"
	outDir    = "/.socikit-out"
)

// startupCommand is the command the profiling step runs: the startup
// option, else ENTRYPOINT + CMD.
func startupCommand(o *Options, img *ocispecs.Image) []string {
	if len(o.Startup) > 0 {
		return o.Startup
	}
	if img == nil {
		return nil
	}
	return append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
}

// profileStartup runs pr's start-up under socikit-trace in an exec on
// its rootfs. It returns the profile and a status line, or a nil profile
// and the cause when the start-up could not be profiled; an error only
// when the build must stop.
func profileStartup(ctx context.Context, c client.Client, pr platformResult, o *Options, tracer []byte, warnAt *digest.Digest) (*profile.Profile, string, error) {
	var img ocispecs.Image
	if len(pr.config) > 0 {
		if err := json.Unmarshal(pr.config, &img); err != nil {
			return nil, "", fmt.Errorf("parse image config: %w", err)
		}
	}
	cmd := startupCommand(o, &img)
	if len(cmd) == 0 {
		return nil, "the image has no ENTRYPOINT or CMD and no `# socikit:startup=` is set", nil
	}
	def, err := profileDefinition(ctx, pr, &img, cmd, o, tracer)
	if err != nil {
		return nil, "", err
	}
	if vtx := execVertex(def); vtx != "" {
		*warnAt = vtx
	}
	r, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB()})
	if err != nil {
		return nil, fmt.Sprintf("the profiling step failed: %v", firstLine(err.Error())), nil
	}
	ref, err := r.SingleRef()
	if err != nil {
		return nil, "", err
	}
	dt, err := ref.ReadFile(ctx, client.ReadRequest{Filename: "out/status.json"})
	if err != nil {
		return nil, fmt.Sprintf("socikit-trace wrote no status: %v", firstLine(err.Error())), nil
	}
	var st trace.Status
	if err := json.Unmarshal(dt, &st); err != nil {
		return nil, fmt.Sprintf("socikit-trace wrote a bad status: %v", err), nil
	}
	if !st.OK {
		return nil, st.Cause, nil
	}
	dt, err = ref.ReadFile(ctx, client.ReadRequest{Filename: "out/profile.json"})
	if err != nil {
		return nil, fmt.Sprintf("socikit-trace wrote no profile: %v", firstLine(err.Error())), nil
	}
	p, err := profile.Unmarshal(dt)
	if err != nil {
		return nil, fmt.Sprintf("socikit-trace wrote a bad profile: %v", err), nil
	}
	p.Platform = platforms.FormatAll(pr.platform)
	p.Command = cmd
	p.Ready = o.Ready
	p.Source = profile.SourceBuild
	status := fmt.Sprintf("ok: %d files, %d ranges, %d bytes read in %.1fs", st.Files, st.Ranges, st.Bytes, st.Seconds)
	if st.Cause != "" {
		status += " (" + st.Cause + ")"
	}
	return p, status, nil
}

// profileDefinition is the LLB of the profiling exec: pr's rootfs with the
// image's environment, working directory and user, socikit-trace mounted
// read-only, and an output mount (world-writable, as the start-up may run
// as any user) for the profile and status. It is cached like any exec: the
// same rootfs and options reuse the profile.
func profileDefinition(ctx context.Context, pr platformResult, img *ocispecs.Image, cmd []string, o *Options, tracer []byte) (*llb.Definition, error) {
	st, err := pr.ref.ToState()
	if err != nil {
		return nil, fmt.Errorf("profiling: rootfs state: %w", err)
	}
	traceSt := llb.Scratch().File(llb.Mkfile("/socikit-trace", 0o755, tracer), llb.WithCustomName("[socikit] start-up tracer"))
	outSt := llb.Scratch().File(llb.Mkdir("/out", 0o777), llb.WithCustomName("[socikit] profile output"))
	args := []string{path.Join(tracerDir, "socikit-trace"),
		"--out", path.Join(outDir, "out/profile.json"),
		"--status", path.Join(outDir, "out/status.json"),
		"--timeout", o.Timeout.String(),
		"--exclude", tracerDir, "--exclude", outDir,
	}
	if o.Ready != "" {
		args = append(args, "--ready", o.Ready)
	}
	args = append(append(args, "--"), cmd...)
	runOpts := []llb.RunOption{
		llb.Args(args),
		llb.AddMount(tracerDir, traceSt, llb.Readonly),
		llb.WithCustomName("[socikit] profiling start-up: " + shellQuote(cmd)),
	}
	hasPath := false
	for _, e := range img.Config.Env {
		k, v, _ := strings.Cut(e, "=")
		if k == "PATH" {
			hasPath = true
		}
		runOpts = append(runOpts, llb.AddEnv(k, v))
	}
	if !hasPath {
		runOpts = append(runOpts, llb.AddEnv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
	}
	if img.Config.WorkingDir != "" {
		runOpts = append(runOpts, llb.Dir(img.Config.WorkingDir))
	}
	if img.Config.User != "" {
		runOpts = append(runOpts, llb.User(img.Config.User))
	}
	run := st.Run(runOpts...)
	out := run.AddMount(outDir, outSt)
	return out.Marshal(ctx, llb.Platform(pr.platform))
}

// execVertex returns the digest of the profiling exec in def, where its
// warnings show: the last exec op (ops come in dependency order, and the
// profiling exec runs on the rootfs that the build's own RUN steps made),
// or "".
func execVertex(def *llb.Definition) digest.Digest {
	var last digest.Digest
	for _, dt := range def.Def {
		var op pb.Op
		if err := op.UnmarshalVT(dt); err != nil {
			continue
		}
		if op.GetExec() != nil {
			last = digest.FromBytes(dt)
		}
	}
	return last
}

// readContextProfile reads a profile from a build context: "NAME" (file
// profile.json) or "NAME:PATH".
func readContextProfile(ctx context.Context, c client.Client, bc *dockerui.Client, spec string) (*profile.Profile, error) {
	name, file, ok := strings.Cut(spec, ":")
	if !ok || file == "" {
		file = "profile.json"
	}
	nc, err := bc.NamedContext(name, dockerui.ContextOpt{NoDockerignore: true})
	if err != nil {
		return nil, fmt.Errorf("profile context %q: %w", name, err)
	}
	if nc == nil {
		return nil, fmt.Errorf("profile context %q: no such build context (give it with docker buildx build --build-context %s=DIR, or buildctl --local %s=DIR --opt context:%s=local:%s)", name, name, name, name, name)
	}
	st, _, err := nc.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("profile context %q: %w", name, err)
	}
	def, err := st.Marshal(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB()})
	if err != nil {
		return nil, fmt.Errorf("profile context %q: %w", name, err)
	}
	ref, err := r.SingleRef()
	if err != nil {
		return nil, err
	}
	dt, err := ref.ReadFile(ctx, client.ReadRequest{Filename: file})
	if err != nil {
		return nil, fmt.Errorf("profile context %q: read %s: %w", name, file, err)
	}
	p, err := profile.Decode(bytes.NewReader(dt))
	if err != nil {
		return nil, fmt.Errorf("profile context %q, %s: %w", name, file, err)
	}
	return p, nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
