#!/usr/bin/env bash
# Make a Debian bookworm base image from Debian's packages, for machines that reach the
# package registries but no image registry. Usage: deploy/base-image.sh IMAGE_NAME
# It has what the Dockerfile's stages need: python3 with venv (bookworm's is 3.11, the
# version pyproject requires) and the CA bundle for pip; apt-get adds the rest at build time.
set -euo pipefail
image=${1:?usage: deploy/base-image.sh IMAGE_NAME}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
# nice: debootstrap unpacks a few hundred packages and must not slow other work here.
nice -n 19 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" http://deb.debian.org/debian >&2
# The image trusts what this machine trusts: a machine that reaches PyPI through a TLS proxy
# keeps the proxy's CA in the local certificates folder (Debian's place for additions), and
# pip must use the system store (PIP_CERT), not the certifi bundle it carries.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
fi
chroot "$rootfs" update-ca-certificates >&2
# The package lists debootstrap fetched are stale by the next build; each stage updates.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . \
  | nice -n 19 docker import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' - "$image" \
    >/dev/null
echo "$image"
