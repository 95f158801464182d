#!/bin/sh
# build-deb.sh builds banner's Debian package with dpkg-deb, offline (the
# Go modules must be in the module cache already: GOPROXY=off).
#
#   packaging/build-deb.sh [OUTDIR]     -> OUTDIR/banner_VERSION_ARCH.deb
#
# Environment: VERSION (default: from git describe, else 0.0.0~dev), GO
# (default: go), ARCH (default: dpkg --print-architecture).
#
# The package holds /usr/sbin/banner (static, cgo-free), the systemd unit
# (not enabled, not started: the admin reviews /etc/banner/banner.toml
# first), /etc/banner/banner.toml as a conffile and the README under
# /usr/share/doc/banner. Purge removes /etc/banner but keeps the store of
# bans (/var/lib/banner) unless BANNER_PURGE_STORE=yes is set for dpkg -P.
set -eu
cd "$(dirname "$0")/.."
out=${1:-dist}
GO=${GO:-go}
ARCH=${ARCH:-$(dpkg --print-architecture)}
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//; s/-/+/g') || true
	[ -n "$VERSION" ] || VERSION="0.0.0~dev+$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
fi
case "$ARCH" in amd64 | arm64 | armhf | i386 | ppc64el | s390x | riscv64) ;; *) echo "unsupported ARCH $ARCH" >&2; exit 1 ;; esac
goarch=$(case "$ARCH" in armhf) echo arm ;; i386) echo 386 ;; ppc64el) echo ppc64le ;; *) echo "$ARCH" ;; esac)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
umask 022
mkdir -p "$root/DEBIAN" "$root/usr/sbin" "$root/usr/lib/systemd/system" "$root/etc/banner" "$root/usr/share/doc/banner"

# The binary: static, no network (modules from the cache only).
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOPROXY=off GOFLAGS=-mod=readonly \
	"$GO" build -trimpath -ldflags='-s -w' -o "$root/usr/sbin/banner" ./cmd/banner

# The unit, pointing at the packaged binary.
sed 's|/usr/local/bin/banner|/usr/sbin/banner|g' conf/banner.service >"$root/usr/lib/systemd/system/banner.service"
install -m 0644 conf/banner.toml "$root/etc/banner/banner.toml"
install -m 0644 README.md "$root/usr/share/doc/banner/README.md"
gzip -9n -c >"$root/usr/share/doc/banner/changelog.Debian.gz" <<CHANGES
banner ($VERSION) unstable; urgency=medium

  * Built from the source tree by packaging/build-deb.sh.

 -- banner maintainers <root@localhost>  $(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
CHANGES
cat >"$root/usr/share/doc/banner/copyright" <<'COPY'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: banner
Files: *
Copyright: banner authors
License: see the source repository
COPY

echo /etc/banner/banner.toml >"$root/DEBIAN/conffiles"
size=$(du -k -s "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: banner
Version: $VERSION
Architecture: $ARCH
Maintainer: banner maintainers <root@localhost>
Installed-Size: $size
Recommends: postfix, nftables
Suggests: ipset, iptables
Section: mail
Priority: optional
Homepage: https://github.com/banner-mta/banner
Description: Postfix policy service and SMTP firewall feeder
 banner answers Postfix's check_policy_service from cached DNSBL lookups,
 reads Postfix's log (files or the systemd journal) for reject patterns,
 and bans clients that keep offending with time-limited DROPs on the SMTP
 ports (ipset + iptables).
 .
 The service is installed but neither enabled nor started: review
 /etc/banner/banner.toml, run "banner run -check", then
 "systemctl enable --now banner".
CONTROL

cat >"$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
# Installs only: the daemon is not enabled or started, the firewall is not
# touched. systemd learns about the unit.
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
SCRIPT
cat >"$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
# Stops a running daemon before its binary goes; its bans stay in the
# kernel until they expire (banner teardown removes them, run it before
# removing the package if you want them gone).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop banner.service >/dev/null 2>&1 || true
	systemctl disable banner.service >/dev/null 2>&1 || true
fi
exit 0
SCRIPT
cat >"$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
# purge: dpkg removes the conffile; the store of bans and escalation
# history (/var/lib/banner) stays unless BANNER_PURGE_STORE=yes.
set -e
case "$1" in
purge)
	rmdir /etc/banner 2>/dev/null || true
	if [ "${BANNER_PURGE_STORE:-}" = yes ]; then
		rm -rf /var/lib/banner
	elif [ -d /var/lib/banner ]; then
		echo "banner: keeping the store of bans in /var/lib/banner (BANNER_PURGE_STORE=yes dpkg -P banner removes it)" >&2
	fi
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/banner_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
