#!/usr/bin/env bash
# Builds the Debian-based test images of seed 003 (issue 21) from Debian
# packages, as OCI image-layout archives that `berth load` takes:
#   flask.oci.tar       berth-test/flask:bookworm   python3-flask (+ flask-restful,
#                        python-is-python3): the seed's product service builds FROM it
#   php-apache.oci.tar  berth-test/php:apache       apache2 + libapache2-mod-php, laid
#                        out like the official php:apache (docker-php-entrypoint,
#                        apache2-foreground, DocumentRoot /var/www/html, port 80)
# Both share one debootstrap minbase layer; each adds one layer of packages
# (umoci computes the diffs). No docs, man pages, locales, apt lists or caches.
#
# The archives are cached by their inputs (this script, the suite, the
# package lists, the mirror and the host's apt sources) under
#   ${BERTH_CACHE_DIR:-~/.cache/berth}/test-images/<hash>/
# and that directory is printed on stdout (the only line on stdout). A second
# run is a cache hit. Progress goes to stderr. Exit status 3: the mirror cannot
# be reached (a test skips on it); anything else non-zero is a build failure.
#
#   images/build-debian-test-images.sh            build (or find) and print the dir
#   images/build-debian-test-images.sh --hash     print the input hash only
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
self=$here/$(basename "$0")
suite=bookworm
mirror=${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
flask_pkgs=(python3-flask python3-flask-restful python-is-python3)
php_pkgs=(apache2 libapache2-mod-php)
cache_root=${BERTH_CACHE_DIR:-${HOME:-/root}/.cache/berth}/test-images

say() { echo "debian-test-images: $*" >&2; }

# The inputs: anything that changes what apt would install changes the hash.
hash=$({
  cat "$self"
  echo "suite=$suite mirror=$mirror arch=$(dpkg --print-architecture)"
  echo "flask=${flask_pkgs[*]} php=${php_pkgs[*]}"
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true
} | sha256sum | cut -c1-16)
if [ "${1:-}" = --hash ]; then
  echo "$hash"
  exit 0
fi
out=$cache_root/$hash
if [ -f "$out/flask.oci.tar" ] && [ -f "$out/php-apache.oci.tar" ]; then
  say "cache hit: $out"
  echo "$out"
  exit 0
fi

[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot)"; exit 1; }
for t in debootstrap umoci skopeo curl; do
  command -v "$t" >/dev/null || { say "$t missing (scripts/deps.sh installs it)"; exit 1; }
done
# A build killed outright (no trap) leaves its work dir: drop old ones.
# --one-file-system: never into a proc mount a killed build left behind.
find "$cache_root" -maxdepth 1 -name '.build.*' -mmin +120 -exec rm -rf --one-file-system {} + 2>/dev/null || true
if ! curl -fsS -o /dev/null --max-time 15 "$mirror/dists/$suite/Release" 2>/dev/null; then
  say "cannot reach the Debian mirror $mirror (offline?): nothing built"
  exit 3
fi

start=$SECONDS
mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.build.XXXXXX")
mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
layout=$work/oci

# Removes what an image needs no copy of (run after every apt step).
slim() {
  local r=$1
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
         "$r"/var/lib/dpkg/*-old "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.cache
  find "$r"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$r"/usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian
  find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  find "$r"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
  : > "$r/etc/resolv.conf"
}

# Runs apt-get install in the rootfs (proc mounted, services not started).
chroot_install() {
  local r=$1; shift
  mount -t proc proc "$r/proc"; mounted+=("$r/proc")
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"; chmod 755 "$r/usr/sbin/policy-rc.d"
  chroot "$r" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get update -q >/dev/null
  chroot "$r" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
    apt-get install -y -q --no-install-recommends "$@" >"$work/apt.log" 2>&1 ||
    { tail -20 "$work/apt.log" >&2; say "apt-get install $* failed"; exit 1; }
  chroot "$r" apt-get clean
  rm -f "$r/usr/sbin/policy-rc.d"
  umount "$r/proc"; mounted=()
  slim "$r"
}

say "building into $out (suite $suite, mirror $mirror)"
umoci init --layout "$layout"
umoci new --image "$layout:base"
umoci unpack --image "$layout:base" "$work/base"
say "debootstrap --variant=minbase $suite ..."
debootstrap --variant=minbase "$suite" "$work/base/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; say "debootstrap failed"; exit 1; }
say "debootstrap done ($((SECONDS - start)) s)"
# Later installs skip docs, man pages and locales, as Debian's docker images do.
cat > "$work/base/rootfs/etc/dpkg/dpkg.cfg.d/berth-slim" <<'D'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
D
printf 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n' > "$work/base/rootfs/etc/apt/apt.conf.d/berth-norecommends"
# The container runtime provides these.
rm -f "$work/base/rootfs/etc/hostname"
slim "$work/base/rootfs"
umoci repack --image "$layout:base" "$work/base"
rm -rf "$work/base"

say "flask layer: ${flask_pkgs[*]} ..."
umoci unpack --image "$layout:base" "$work/flask"
chroot_install "$work/flask/rootfs" "${flask_pkgs[@]}"
mkdir -p "$work/flask/rootfs/usr/src/app"
umoci repack --image "$layout:flask" "$work/flask"
rm -rf "$work/flask"
umoci config --image "$layout:flask" --tag flask \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env LANG=C.UTF-8 --config.env PYTHONUNBUFFERED=1 \
  --config.cmd python3 --config.workingdir /usr/src/app \
  --config.label "org.opencontainers.image.title=berth test image: python3-flask ($suite)"
say "flask done ($((SECONDS - start)) s)"

say "php:apache layer: ${php_pkgs[*]} ..."
umoci unpack --image "$layout:base" "$work/php"
r=$work/php/rootfs
chroot_install "$r" "${php_pkgs[@]}"
# As the official php:apache: an empty DocumentRoot owned by www-data, logs to
# the container's stdout/stderr, apache2-foreground as the command.
rm -rf "$r/var/www/html"; mkdir -p "$r/var/www/html"
chroot "$r" chown www-data:www-data /var/www/html
chmod 777 "$r/var/www/html"
mkdir -p "$r/var/log/apache2"
ln -sfT /dev/stdout "$r/var/log/apache2/access.log"
ln -sfT /dev/stderr "$r/var/log/apache2/error.log"
ln -sfT /dev/stdout "$r/var/log/apache2/other_vhosts_access.log"
cat > "$r/usr/local/bin/apache2-foreground" <<'A'
#!/bin/sh
set -e
# Apache gets grumpy about PID files pre-existing.
. /etc/apache2/envvars
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
rm -f "$APACHE_PID_FILE"
exec apache2 -DFOREGROUND "$@"
A
cat > "$r/usr/local/bin/docker-php-entrypoint" <<'E'
#!/bin/sh
set -e
# First arg is `-f` or `--some-option`: run apache with them.
if [ "${1#-}" != "$1" ]; then
  set -- apache2-foreground "$@"
fi
exec "$@"
E
chmod 755 "$r/usr/local/bin/apache2-foreground" "$r/usr/local/bin/docker-php-entrypoint"
umoci repack --image "$layout:php" "$work/php"
rm -rf "$work/php"
umoci config --image "$layout:php" --tag php \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.entrypoint docker-php-entrypoint --config.cmd apache2-foreground \
  --config.workingdir /var/www/html --config.exposedports 80/tcp --config.stopsignal SIGWINCH \
  --config.label "org.opencontainers.image.title=berth test image: apache2 + mod_php ($suite)"
say "php:apache done ($((SECONDS - start)) s)"

mkdir -p "$work/out"
skopeo copy -q "oci:$layout:flask" "oci-archive:$work/out/flask.oci.tar:berth-test/flask:bookworm"
skopeo copy -q "oci:$layout:php" "oci-archive:$work/out/php-apache.oci.tar:berth-test/php:apache"
rm -rf "$out"
mv "$work/out" "$out"
say "built in $((SECONDS - start)) s: $(du -h "$out"/*.tar | tr '\t\n' '  ')"
echo "$out"
