//go:build integration

package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/pelletier/go-toml/v2"
	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"

	"github.com/socikit/socikit/snapshotter/service"
)

// kubeDir holds the Kubernetes example.
var kubeDir = filepath.Join(repoRoot, "examples/kubernetes")

// decodeManifests decodes every document of a YAML file with the
// Kubernetes API types, strictly (an unknown or misspelt field fails).
func decodeManifests(t *testing.T, file string) []k8sruntime.Object {
	t.Helper()
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, kubeletv1beta1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	dec := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	f, err := os.Open(filepath.Join(kubeDir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := k8syaml.NewYAMLReader(bufio.NewReader(f))
	var objs []k8sruntime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func stripComments(b []byte) []byte {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAll(b, nil)
}

// TestKubernetesManifests checks examples/kubernetes: every manifest
// decodes strictly with the Kubernetes API types (k8s.io/api v0.37), the
// DaemonSet has what installing the snapshotter on the node needs, its
// ConfigMap holds the files beside it byte for byte, and the paths, socket
// and plugin names agree across the DaemonSet, the installer, the systemd
// unit, the snapshotter's config (loaded by the daemon's own LoadConfig),
// containerd's drop-in (merged by containerd 2.4.2's `config dump` when
// bin/containerd is there) and the kubelet's config.
func TestKubernetesManifests(t *testing.T) {
	objs := decodeManifests(t, "socikit-snapshotter.yaml")
	var cm *corev1.ConfigMap
	var ds *appsv1.DaemonSet
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			cm = o
		case *appsv1.DaemonSet:
			ds = o
		default:
			t.Errorf("unexpected %T in socikit-snapshotter.yaml", o)
		}
	}
	if cm == nil || ds == nil {
		t.Fatalf("socikit-snapshotter.yaml: want a ConfigMap and a DaemonSet, have %d objects", len(objs))
	}

	// The ConfigMap's files are the files of the example.
	for _, f := range []string{"socikit-snapshotter.toml", "containerd-socikit.toml", "socikit-snapshotter.service"} {
		b, err := os.ReadFile(filepath.Join(kubeDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data[f] != string(b) {
			t.Errorf("ConfigMap %s: key %s differs from examples/kubernetes/%s", cm.Name, f, f)
		}
	}
	install := cm.Data["install.sh"]
	if install == "" {
		t.Fatal("ConfigMap has no install.sh")
	}

	// The DaemonSet.
	spec := ds.Spec.Template.Spec
	if ds.Namespace != cm.Namespace {
		t.Errorf("DaemonSet in %q, ConfigMap in %q", ds.Namespace, cm.Namespace)
	}
	if !selects(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the template's labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}
	if !spec.HostPID {
		t.Error("hostPID: false (the installer runs systemctl in the host's mount namespace)")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("%d init containers, %d containers: want 1 and 1", len(spec.InitContainers), len(spec.Containers))
	}
	inst := spec.InitContainers[0]
	if sc := inst.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("the installer is not privileged")
	}
	if inst.Image != spec.Containers[0].Image {
		t.Errorf("installer image %s, container image %s", inst.Image, spec.Containers[0].Image)
	}
	if _, err := name.ParseReference(inst.Image); err != nil {
		t.Errorf("image %q: %v", inst.Image, err)
	}
	docs, err := os.ReadFile(filepath.Join(repoRoot, "docs/kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(docs, []byte(inst.Image)) {
		t.Errorf("docs/kubernetes.md does not name the DaemonSet's image %s (how to build and push it)", inst.Image)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	// hostMount returns the host path under a container path, and checks
	// that the volume behind it exists.
	hostPathOf := func(c corev1.Container, mountPath string) string {
		for _, m := range c.VolumeMounts {
			if m.MountPath != mountPath {
				continue
			}
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("container %s mounts volume %q, which is not in the pod", c.Name, m.Name)
				return ""
			}
			if v.HostPath == nil {
				t.Errorf("volume %s at %s is not a hostPath", m.Name, mountPath)
				return ""
			}
			return v.HostPath.Path
		}
		t.Errorf("container %s mounts nothing at %s", c.Name, mountPath)
		return ""
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				t.Errorf("container %s mounts unknown volume %s", c.Name, m.Name)
			}
		}
	}
	cfgVol := volumes["config"]
	if cfgVol.ConfigMap == nil || cfgVol.ConfigMap.Name != cm.Name {
		t.Fatalf("volume config is not the ConfigMap %s", cm.Name)
	}
	for _, it := range cfgVol.ConfigMap.Items {
		if _, ok := cm.Data[it.Key]; !ok {
			t.Errorf("volume config takes key %s, not in the ConfigMap", it.Key)
		}
	}
	if len(inst.Command) < 2 || !strings.HasPrefix(inst.Command[len(inst.Command)-1], "/config/") {
		t.Errorf("installer command %v does not run a script of the ConfigMap", inst.Command)
	}
	// Every /host/... path the installer writes is a hostPath mount of the
	// same path on the node.
	for _, p := range regexp.MustCompile(`/host(/[A-Za-z0-9_./-]+)`).FindAllStringSubmatch(install, -1) {
		var dir string
		for _, m := range inst.VolumeMounts {
			if strings.HasPrefix(p[0], m.MountPath+"/") || p[0] == m.MountPath {
				dir = m.MountPath
			}
		}
		if dir == "" {
			t.Errorf("install.sh writes %s, under no mount of the installer", p[0])
			continue
		}
		if hp := hostPathOf(inst, dir); hp != strings.TrimPrefix(dir, "/host") {
			t.Errorf("installer mount %s is hostPath %s, want %s", dir, hp, strings.TrimPrefix(dir, "/host"))
		}
	}
	if hp := hostPathOf(inst, "/dev/fuse"); hp != "/dev/fuse" || *volumes["fuse"].HostPath.Type != corev1.HostPathCharDev {
		t.Errorf("/dev/fuse: hostPath %s", hp)
	}

	// The snapshotter's config, as the daemon loads it.
	cfg, err := service.LoadConfig(filepath.Join(kubeDir, "socikit-snapshotter.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.CRI.Enable {
		t.Error("[cri] enable is off: pull secrets would not reach the snapshotter")
	}
	sock := cfg.Address
	if hp := hostPathOf(spec.Containers[0], filepath.Dir(sock)); hp != filepath.Dir(sock) {
		t.Errorf("the readiness probe's mount of %s is hostPath %s", filepath.Dir(sock), hp)
	}
	if probe := spec.Containers[0].ReadinessProbe; probe == nil || probe.Exec == nil || !strings.Contains(strings.Join(probe.Exec.Command, " "), sock) {
		t.Errorf("the readiness probe does not test %s", sock)
	}
	if !strings.Contains(install, sock) {
		t.Errorf("install.sh does not wait for %s", sock)
	}

	// The systemd unit runs what the installer installs, with that config.
	unit := cm.Data["socikit-snapshotter.service"]
	execLine := regexp.MustCompile(`(?m)^ExecStart=(\S+) --config (\S+)$`).FindStringSubmatch(unit)
	if execLine == nil {
		t.Fatal("the unit has no ExecStart=BINARY --config FILE line")
	}
	for _, want := range []string{"/host" + execLine[1], "/host" + execLine[2], "/host/etc/systemd/system/socikit-snapshotter.service"} {
		if !strings.Contains(install, want) {
			t.Errorf("install.sh does not install %s", want)
		}
	}
	if !strings.Contains(install, "socikit-snapshotter.toml /host"+execLine[2]) {
		t.Errorf("install.sh does not put the snapshotter config at %s", execLine[2])
	}

	// containerd's drop-in: the proxy plugin at the snapshotter's socket,
	// the CRI snapshotter that plugin, annotations on.
	var dropin struct {
		Version      int `toml:"version"`
		ProxyPlugins map[string]struct {
			Type    string            `toml:"type"`
			Address string            `toml:"address"`
			Exports map[string]string `toml:"exports"`
		} `toml:"proxy_plugins"`
		Plugins map[string]map[string]any `toml:"plugins"`
	}
	if err := toml.Unmarshal([]byte(cm.Data["containerd-socikit.toml"]), &dropin); err != nil {
		t.Fatalf("containerd-socikit.toml: %v", err)
	}
	pp, ok := dropin.ProxyPlugins["socikit"]
	if !ok || pp.Type != "snapshot" || pp.Address != sock {
		t.Errorf("proxy plugin socikit: %+v, want a snapshot plugin at %s", pp, sock)
	}
	if pp.Exports["root"] != cfg.Root || pp.Exports["enable_remote_snapshot_annotations"] != "true" {
		t.Errorf("proxy plugin exports %v (root must be %s)", pp.Exports, cfg.Root)
	}
	images := dropin.Plugins["io.containerd.cri.v1.images"]
	if images["snapshotter"] != "socikit" || images["disable_snapshot_annotations"] != false {
		t.Errorf("CRI images config %v", images)
	}
	if d := filepath.Join("/etc/containerd/conf.d", "socikit.toml"); !strings.Contains(install, "/host"+d) {
		t.Errorf("install.sh does not install the drop-in as %s", d)
	}
	containerdDump(t, cm.Data["containerd-socikit.toml"], sock)

	// The kubelet's image service is the snapshotter's socket.
	kobjs := decodeManifests(t, "kubelet-config.yaml")
	kc, ok := kobjs[0].(*kubeletv1beta1.KubeletConfiguration)
	if len(kobjs) != 1 || !ok {
		t.Fatalf("kubelet-config.yaml: %T", kobjs[0])
	}
	if kc.ImageServiceEndpoint != "unix://"+sock {
		t.Errorf("imageServiceEndpoint %s, want unix://%s", kc.ImageServiceEndpoint, sock)
	}
	if want := "unix://" + cfg.CRI.ImageServiceAddress; kc.ContainerRuntimeEndpoint != want {
		t.Errorf("containerRuntimeEndpoint %s, want the snapshotter's image_service_address %s", kc.ContainerRuntimeEndpoint, want)
	}

	// The example pod.
	pobjs := decodeManifests(t, "pod.yaml")
	pod, ok := pobjs[0].(*corev1.Pod)
	if len(pobjs) != 1 || !ok {
		t.Fatalf("pod.yaml: %T", pobjs[0])
	}
	if len(pod.Spec.Containers) == 0 || len(pod.Spec.ImagePullSecrets) == 0 {
		t.Fatal("pod.yaml: no container or no imagePullSecrets")
	}
	ref, err := name.ParseReference(pod.Spec.Containers[0].Image)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := os.ReadFile(filepath.Join(kubeDir, "pod.yaml"))
	if !strings.Contains(string(pb), "--docker-server="+ref.Context().RegistryStr()) {
		t.Errorf("pod.yaml's secret command is not for the image's registry %s", ref.Context().RegistryStr())
	}
	if !slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(s corev1.LocalObjectReference) bool {
		return strings.Contains(string(pb), "secret docker-registry "+s.Name)
	}) {
		t.Error("pod.yaml's imagePullSecrets is not the secret its comment creates")
	}
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// containerdDump merges the drop-in into a containerd 2.4.2 config the way
// a node's config imports it, and checks what containerd makes of it.
func containerdDump(t *testing.T, dropin, sock string) {
	t.Helper()
	bin := filepath.Join(repoRoot, "bin/containerd")
	if _, err := os.Stat(bin); err != nil {
		t.Logf("no %s: the drop-in is not merged by containerd", bin)
		return
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d/socikit.toml"), []byte(dropin), 0o644); err != nil {
		t.Fatal(err)
	}
	main := "version = 3\nimports = [\"" + filepath.Join(dir, "conf.d/*.toml") + "\"]\nroot = \"" + dir + "/root\"\nstate = \"" + dir + "/state\"\n"
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"), "config", "dump").Output()
	if err != nil {
		t.Fatalf("containerd config dump: %v", err)
	}
	var dump struct {
		ProxyPlugins map[string]struct {
			Address string `toml:"address"`
		} `toml:"proxy_plugins"`
		Plugins map[string]map[string]any `toml:"plugins"`
	}
	if err := toml.Unmarshal(out, &dump); err != nil {
		t.Fatalf("parse containerd's config dump: %v", err)
	}
	if dump.ProxyPlugins["socikit"].Address != sock {
		t.Errorf("containerd's merged config: proxy plugin socikit at %q", dump.ProxyPlugins["socikit"].Address)
	}
	images := dump.Plugins["io.containerd.cri.v1.images"]
	if images["snapshotter"] != "socikit" || images["disable_snapshot_annotations"] != false {
		t.Errorf("containerd's merged CRI images config: snapshotter %v, disable_snapshot_annotations %v", images["snapshotter"], images["disable_snapshot_annotations"])
	}
	var snapshotters []string
	if uc, ok := dump.Plugins["io.containerd.transfer.v1.local"]["unpack_config"].([]any); ok {
		for _, u := range uc {
			if m, ok := u.(map[string]any); ok {
				snapshotters = append(snapshotters, m["snapshotter"].(string))
			}
		}
	}
	if !slices.Contains(snapshotters, "socikit") || !slices.Contains(snapshotters, "overlayfs") {
		t.Errorf("containerd's merged transfer unpack_config: snapshotters %v", snapshotters)
	}
}

// TestKubernetesInstaller runs the DaemonSet's install.sh (from the
// ConfigMap) in a chroot of Debian's static busybox laid out as the
// installer container sees it (/config, /host/..., /usr/bin/
// socikit-snapshotter), with nsenter replaced by a recorder of the host
// commands and the snapshotter's socket already there: it installs every
// file, enables and restarts the snapshotter, restarts containerd once; run
// again unchanged it only starts the (running) service; with a new binary it
// restarts the snapshotter but not containerd.
func TestKubernetesInstaller(t *testing.T) {
	requireRoot(t)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs Debian's busybox-static: %v", err)
	}
	var cm *corev1.ConfigMap
	for _, o := range decodeManifests(t, "socikit-snapshotter.yaml") {
		if c, ok := o.(*corev1.ConfigMap); ok {
			cm = c
		}
	}
	root := t.TempDir()
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("bin/busybox", string(bb), 0o755)
	if out, err := exec.Command("chroot", root, "/bin/busybox", "--install", "-s", "/bin").CombinedOutput(); err != nil {
		t.Fatalf("busybox --install: %v\n%s", err, out)
	}
	for k, v := range cm.Data {
		write("config/"+k, v, 0o644)
	}
	write("usr/bin/socikit-snapshotter", "binary v1\n", 0o755)
	write("fake/nsenter", "#!/bin/sh\n[ \"$1 $2 $3 $4\" = \"-t 1 -m --\" ] || exit 2\nshift 4\necho \"$*\" >>/host-commands\n", 0o755)
	// The hostPath mounts: directories of the chroot.
	for _, d := range []string{"host/opt/socikit", "host/etc/socikit-snapshotter", "host/etc/systemd/system", "host/etc/containerd/conf.d",
		"host/var/lib/socikit-snapshotter", "run/socikit-snapshotter", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(root, "dev/fuse"), unix.S_IFCHR|0o666, int(unix.Mkdev(10, 229))); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(root, "run/socikit-snapshotter/socikit-snapshotter.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	install := func() []string {
		t.Helper()
		_ = os.Remove(filepath.Join(root, "host-commands"))
		cmd := exec.Command("chroot", root, "/bin/sh", "/config/install.sh")
		cmd.Env = []string{"PATH=/fake:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(filepath.Join(root, "host-commands"))
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	want := func(got []string, cmds ...string) {
		t.Helper()
		if strings.Join(got, "; ") != strings.Join(cmds, "; ") {
			t.Errorf("host commands:\n  %s\nwant\n  %s", strings.Join(got, "; "), strings.Join(cmds, "; "))
		}
	}
	want(install(), "systemctl daemon-reload", "systemctl enable socikit-snapshotter.service",
		"systemctl restart socikit-snapshotter.service", "systemctl restart containerd.service")
	for dst, src := range map[string]string{
		"host/opt/socikit/bin/socikit-snapshotter":            "usr/bin/socikit-snapshotter",
		"host/etc/socikit-snapshotter/config.toml":            "config/socikit-snapshotter.toml",
		"host/etc/systemd/system/socikit-snapshotter.service": "config/socikit-snapshotter.service",
		"host/etc/containerd/conf.d/socikit.toml":             "config/containerd-socikit.toml",
	} {
		a, err := os.ReadFile(filepath.Join(root, dst))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(root, src))
		if !bytes.Equal(a, b) {
			t.Errorf("/%s is not /%s", dst, src)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "host/opt/socikit/bin/socikit-snapshotter")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("installed binary: %v %v", fi.Mode(), err)
	}
	want(install(), "systemctl daemon-reload", "systemctl enable socikit-snapshotter.service", "systemctl start socikit-snapshotter.service")
	write("usr/bin/socikit-snapshotter", "binary v2\n", 0o755)
	want(install(), "systemctl daemon-reload", "systemctl enable socikit-snapshotter.service", "systemctl restart socikit-snapshotter.service")
}
