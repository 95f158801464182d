// Package packaging tests the Debian package build-deb.sh makes.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

// lifecycle runs in a private mount namespace, in a throw-away root: an
// overlay of / whose upper layer is a tmpfs, so dpkg -i, -r and -P change
// nothing on the machine. $1 is the package.
const lifecycle = `set -eu
mount --make-rprivate /
T=$(mktemp -d /tmp/banner-deb-root.XXXXXX)
mount -t tmpfs tmpfs "$T"
mkdir "$T/up" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/up,workdir=$T/work" "$T/root"
mount --rbind /proc "$T/root/proc"
mount --rbind /dev "$T/root/dev"
mount -t tmpfs tmpfs "$T/root/tmp"
cp "$1" "$T/root/tmp/banner.deb"
inroot() { chroot "$T/root" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }

inroot rm -rf /etc/banner /var/lib/banner /usr/sbin/banner
inroot dpkg -i /tmp/banner.deb
inroot test -x /usr/sbin/banner || fail "no /usr/sbin/banner"
inroot test -f /usr/lib/systemd/system/banner.service || fail "no unit"
inroot grep -q 'ExecStart=/usr/sbin/banner run' /usr/lib/systemd/system/banner.service || fail "the unit does not run /usr/sbin/banner"
inroot test -f /usr/share/doc/banner/README.md || fail "no README"
inroot dpkg-query -W -f='${Conffiles}' banner | grep -q /etc/banner/banner.toml || fail "banner.toml is no conffile"
inroot sh -c 'ls /etc/systemd/system/*.wants/banner.service' 2>/dev/null && fail "the unit was enabled on install"
inroot file /usr/sbin/banner 2>/dev/null | grep -q 'statically linked' || inroot ldd /usr/sbin/banner 2>&1 | grep -q 'not a dynamic' || fail "the binary is not static"
echo "== banner run -check"
inroot /usr/sbin/banner run -check -config /etc/banner/banner.toml || fail "run -check failed"
inroot /usr/sbin/banner -h >/dev/null 2>&1 || true

# A store of bans, and an admin's change to the conffile.
inroot mkdir -p /var/lib/banner
inroot sh -c 'echo store > /var/lib/banner/banner.db'
inroot sh -c 'echo "# changed by the admin" >> /etc/banner/banner.toml'
echo "== dpkg -r"
inroot dpkg -r banner
inroot test ! -e /usr/sbin/banner || fail "binary left after dpkg -r"
inroot test -f /etc/banner/banner.toml || fail "dpkg -r removed the conffile"
echo "== dpkg -P"
inroot dpkg -P banner
inroot test ! -e /etc/banner || fail "/etc/banner left after purge"
inroot test -f /var/lib/banner/banner.db || fail "purge removed the store of bans"
echo "== dpkg -i, then BANNER_PURGE_STORE=yes dpkg -P"
inroot dpkg -i /tmp/banner.deb >/dev/null
inroot env BANNER_PURGE_STORE=yes dpkg -P banner
inroot test ! -e /var/lib/banner || fail "BANNER_PURGE_STORE=yes kept the store"
echo "== lifecycle OK"
`

// TestDebLifecycle builds the package with build-deb.sh (offline), checks
// what it holds, installs it with dpkg -i in a throw-away root, runs
// banner run -check from the installed path, and removes it with dpkg -r
// and dpkg -P: the conffile stays over -r, purge removes it but keeps the
// store of bans unless BANNER_PURGE_STORE=yes.
func TestDebLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds banner and a package")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "dpkg-deb", "dpkg", "unshare", "chroot", "go")
	out := t.TempDir()
	build := exec.Command("sh", "packaging/build-deb.sh", out)
	build.Dir = ".."
	b, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b[strings.LastIndexByte(strings.TrimSpace(string(b)), '\n')+1:]))
	if _, err := os.Stat(deb); err != nil || filepath.Ext(deb) != ".deb" {
		t.Fatalf("build-deb.sh printed %q: %v", b, err)
	}
	info, err := exec.Command("dpkg-deb", "--field", deb, "Package", "Depends", "Recommends", "Suggests", "Architecture").Output()
	if err != nil || strings.Contains(string(info), "Depends:") || !strings.Contains(string(info), "Recommends: postfix, nftables") ||
		!strings.Contains(string(info), "Suggests: ipset, iptables") {
		t.Fatalf("control: %s %v", info, err)
	}
	cmd := exec.Command("unshare", "-m", "sh", "-c", lifecycle, "lifecycle", deb)
	b, err = cmd.CombinedOutput()
	t.Logf("%s", b)
	if err != nil || !strings.Contains(string(b), "lifecycle OK") {
		t.Fatalf("lifecycle: %v", err)
	}
}
