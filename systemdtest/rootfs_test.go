package systemdtest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// suite is the Debian release the container runs.
const suite = "bookworm"

// fallbackMirror is used when apt's sources name no mirror for suite.
const fallbackMirror = "http://deb.debian.org/debian"

// includes are the packages debootstrap adds to the minbase variant: a
// bootable systemd with its system bus, the firewall tools, polkitd (which
// needs libpam-systemd to start), the OpenSSH server jailkeeper's
// example jail protects, and make for `make uninstall` on the server.
var includes = []string{"systemd", "systemd-sysv", "dbus", "iptables", "ipset", "nftables", "libsystemd0",
	"polkitd", "libpam-systemd", "openssh-server", "make"}

// cacheBase returns CacheDir, or JAILKEEPER_TEST_CACHE when set.
func cacheBase() string {
	if d := os.Getenv("JAILKEEPER_TEST_CACHE"); d != "" {
		return d
	}
	return CacheDir
}

// rootfsKey names a cached root file system by suite, variant and package
// list, so that changing the list builds a new one.
func rootfsKey(pkgs []string) string {
	sum := sha256.Sum256([]byte(suite + " minbase " + strings.Join(pkgs, ",")))
	return suite + "-" + hex.EncodeToString(sum[:6])
}

// cachedRootfs returns a debootstrapped root file system for suite,
// building it on the first call on this machine. A lock file serialises
// concurrent test runs; the tree is built under a temporary name and
// renamed when complete, so an interrupted build is never used.
func cachedRootfs(t *testing.T) string {
	t.Helper()
	return cachedRootfsWith(t)
}

// cachedRootfsWith is cachedRootfs with more packages than includes: a
// tree of its own, cached under its own key, so that a test that needs a
// large package (Cockpit) does not grow every other test's container.
func cachedRootfsWith(t *testing.T, extra ...string) string {
	t.Helper()
	pkgs := append(slices.Clone(includes), extra...)
	base := cacheBase()
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatalf("creating rootfs cache: %v", err)
	}
	dir := filepath.Join(base, rootfsKey(pkgs))
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("opening rootfs cache lock: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("locking rootfs cache %s: %v", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		t.Logf("rootfs: cached %s", dir)
		return dir
	}
	// Leftovers of interrupted builds: nobody else builds while we hold the lock.
	stale, _ := filepath.Glob(dir + ".tmp-*")
	for _, s := range stale {
		_ = os.RemoveAll(s)
	}
	tmp := dir + ".tmp-" + testbed.Suffix()
	defer os.RemoveAll(tmp)
	mirror := aptMirror(t)
	start := time.Now()
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(pkgs, ","), suite, tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap %s from %s: %v\n%s", suite, mirror, err, tail(string(out), 30))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("storing rootfs in the cache: %v", err)
	}
	t.Logf("rootfs: debootstrap %s from %s into %s took %v", suite, mirror, dir, time.Since(start).Round(time.Second))
	return dir
}

// newRootfs returns a private root for one container: an overlay mount
// whose lower layer is the cached tree (instant, and the cache stays
// clean), or a copy of it where overlayfs is not available (e.g. a cache
// that is itself on overlayfs). It is unmounted and removed at cleanup,
// which runs after the container's poweroff.
func newRootfs(t *testing.T, cached string) string {
	t.Helper()
	run := filepath.Join(filepath.Dir(cached), "run-"+testbed.Suffix())
	root := filepath.Join(run, "root")
	upper, work := filepath.Join(run, "upper"), filepath.Join(run, "work")
	for _, d := range []string{root, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("creating %s: %v", d, err)
		}
	}
	mounted := false
	t.Cleanup(func() {
		if mounted {
			if err := syscall.Unmount(root, 0); err != nil {
				t.Logf("unmounting %s: %v; detaching it", root, err)
				if err := syscall.Unmount(root, syscall.MNT_DETACH); err != nil {
					t.Errorf("detaching %s: %v (left in place)", root, err)
					return
				}
			}
		}
		if err := os.RemoveAll(run); err != nil {
			t.Errorf("removing the container's root %s: %v", run, err)
		}
	})
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", cached, upper, work)
	err := syscall.Mount("overlay", root, "overlay", 0, opts)
	if err == nil {
		mounted = true
		t.Logf("rootfs: overlay on %s at %s", cached, root)
		return root
	}
	t.Logf("rootfs: overlay mount failed (%v); copying instead", err)
	start := time.Now()
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", cached, root).CombinedOutput(); err != nil {
		t.Fatalf("copying rootfs: %v\n%s", err, out)
	}
	t.Logf("rootfs: copied to %s in %v", root, time.Since(start).Round(time.Millisecond))
	return root
}

// aptMirror returns the Debian mirror apt already uses for suite (so that
// the test goes where this machine is allowed to go), or fallbackMirror.
func aptMirror(t *testing.T) string {
	t.Helper()
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(f, ".sources") {
			uri = mirrorFromDeb822(string(b), suite)
		} else {
			uri = mirrorFromList(string(b), suite)
		}
		if uri != "" {
			return uri
		}
	}
	t.Logf("rootfs: no apt source for %s main; using %s", suite, fallbackMirror)
	return fallbackMirror
}

// mirrorFromList finds the URI of a one-line-style source ("deb [opts] URI
// SUITE COMPONENT…") for suite with component main.
func mirrorFromList(content, suite string) string {
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) >= 3 && f[1] == suite && slices.Contains(f[2:], "main") {
			return strings.TrimSuffix(f[0], "/")
		}
	}
	return ""
}

// mirrorFromDeb822 finds the first URI of a deb822 stanza (.sources file)
// of type deb that lists suite and component main.
func mirrorFromDeb822(content, suite string) string {
	for _, stanza := range strings.Split(strings.ReplaceAll(content, "\r\n", "\n"), "\n\n") {
		fields := map[string][]string{}
		var key string
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && key != "" {
				fields[key] = append(fields[key], strings.Fields(line)...)
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			key = strings.ToLower(strings.TrimSpace(k))
			fields[key] = strings.Fields(v)
		}
		if len(fields["enabled"]) > 0 && fields["enabled"][0] == "no" {
			continue
		}
		if slices.Contains(fields["types"], "deb") && slices.Contains(fields["suites"], suite) &&
			slices.Contains(fields["components"], "main") && len(fields["uris"]) > 0 {
			return strings.TrimSuffix(fields["uris"][0], "/")
		}
	}
	return ""
}

// TestAptMirror checks the source parsers on the formats apt accepts.
func TestAptMirror(t *testing.T) {
	tests := []struct {
		name, content string
		deb822        bool
		want          string
	}{
		{"list", "deb http://ftp.de.debian.org/debian/ bookworm main contrib\n", false, "http://ftp.de.debian.org/debian"},
		{"list with options", "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n", false, "http://m.example/debian"},
		{"list skips other suites", "deb http://sec.example/debian-security bookworm-security main\ndeb http://m.example/debian bookworm main\n", false, "http://m.example/debian"},
		{"list skips deb-src and comments", "deb-src http://src.example/debian bookworm main\n# deb http://old.example/debian bookworm main\n", false, ""},
		{"list needs main", "deb http://m.example/debian bookworm contrib\n", false, ""},
		{"deb822", "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
			"Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n", true, "http://deb.debian.org/debian"},
		{"deb822 other suite only", "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n", true, ""},
		{"deb822 disabled", "Enabled: no\nTypes: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\n", true, ""},
		{"deb822 multi-line field", "Types: deb deb-src\nURIs:\n http://m.example/debian/\nSuites: bookworm\nComponents: main\n", true, "http://m.example/debian"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			if tc.deb822 {
				got = mirrorFromDeb822(tc.content, "bookworm")
			} else {
				got = mirrorFromList(tc.content, "bookworm")
			}
			if got != tc.want {
				t.Errorf("mirror = %q, want %q", got, tc.want)
			}
		})
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeFile writes content to path inside the container's root dir.
func writeFile(t *testing.T, root, path, content string) {
	t.Helper()
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatalf("creating %s: %v", filepath.Dir(path), err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatalf("writing %s into the container's root: %v", path, err)
	}
}
