#!/usr/bin/env bash
# Builds the container images from the repository's Dockerfile, unmodified, with buildah (no daemon), and
# smoke-tests them: tests/deploy/test_images.py runs them with `buildah run` (docs/containers.md).
#
#   scripts/containers.sh           build api and worker, check the source-only rebuild, run the smoke tests
#   scripts/containers.sh --gpu     also build api-gpu and worker-gpu (not run: no GPU here)
#   scripts/containers.sh --build   build only (no cache check, no smoke tests)
#   scripts/containers.sh --build api   build these targets only
#
# Needs root (buildah builds as root here) and buildah and mmdebstrap (installed with apt-get when missing).
# Safe to run again: the base image, the layer cache and the images stay between runs (var/containers/,
# buildah's storage). Without a registry, the Dockerfile's debian base is made from the Debian mirror with
# mmdebstrap and stored under the name a registry would give it. pip inside the build uses this machine's
# pip configuration (indexes, wheel folders, constraints, CA certificates), mounted read-only for the build
# only: nothing of it reaches a layer. Timings go to var/containers/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=var/containers
TARGETS=()
GPU=0
SMOKE=1
for arg in "$@"; do
    case "$arg" in
        --gpu) GPU=1 ;;
        --build) SMOKE=0 ;;
        api | worker | api-gpu | worker-gpu) TARGETS+=("$arg") ;;
        *) echo "usage: $0 [--gpu] [--build] [TARGET...]" >&2; exit 2 ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(api worker)
[ "$GPU" = 0 ] || TARGETS+=(api-gpu worker-gpu)

fail() {
    echo "containers: $*" >&2
    exit 1
}

started=$(date +%s)
mkdir -p "$STATE"
: > "$STATE/timings.txt"
timing() { echo "$1 $2" | tee -a "$STATE/timings.txt"; }
since() { awk -v begin="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - begin }'; }

# ---- the tools
if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing buildah and mmdebstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap >/dev/null \
            || fail "apt-get could not install buildah and mmdebstrap: the images were NOT built or tested"
    else
        fail "buildah and mmdebstrap are missing and this is not root with apt-get (sudo apt-get install" \
            "buildah mmdebstrap): the images were NOT built or tested"
    fi
fi
[ "$(id -u)" = 0 ] || fail "run as root (buildah builds as root here): the images were NOT built or tested"
[ -x .venv/bin/python ] || fail ".venv is missing: run scripts/setup.sh first"
export BUILDAH_ISOLATION=chroot # podman's OCI runtime cannot start containers on this kind of machine
# working containers a killed test run left behind (tests/deploy/test_images.py names them imgcls-test-*)
buildah containers --noheading --format '{{.ContainerName}}' | { grep '^imgcls-test-' || true; } \
    | xargs -r buildah rm >/dev/null

# ---- the base image: the Dockerfile's first FROM, made from the Debian mirror when not stored yet
base=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)
[[ "$base" =~ ^debian:([0-9]+)(\.[0-9]+)?-slim$ ]] || fail "the Dockerfile's base $base is not debian:N-slim"
base_ref="docker.io/library/$base"
if ! buildah inspect --type image "$base_ref" >/dev/null 2>&1; then
    begin=$(date +%s.%N)
    [ "${BASH_REMATCH[1]}" = 12 ] || fail "only Debian 12 (bookworm) is made here, not $base"
    tarball="$STATE/debian-bookworm-slim.tar"
    if [ ! -s "$tarball" ]; then
        echo "==> $base: a Debian 12 root file system from the Debian mirror (mmdebstrap)"
        # as the official slim image: /usr merged without the usrmerge package (which would bring perl);
        # no manuals, documentation (but the licences) or translations
        mmdebstrap --quiet --variant=minbase --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            bookworm "$tarball.part.tar" \
            "deb http://deb.debian.org/debian bookworm main" \
            "deb http://deb.debian.org/debian bookworm-updates main" \
            "deb http://deb.debian.org/debian-security bookworm-security main" \
            || fail "mmdebstrap could not make the base image: the images were NOT built or tested"
        mv "$tarball.part.tar" "$tarball"
    fi
    made=$(tar -xOf "$tarball" ./etc/debian_version)
    [ "$base" = "debian:$made-slim" ] || [ "$base" = "debian:12-slim" ] \
        || echo "note: the Debian mirror is at $made now; stored as $base (update the Dockerfile's FROM)"
    container=$(buildah from scratch)
    buildah add --quiet "$container" "$tarball" / >/dev/null
    buildah config --cmd bash "$container"
    buildah commit --quiet --rm "$container" "$base_ref" >/dev/null
    timing base-image-s "$(since "$begin")"
fi

# ---- pip's configuration for the build: this machine's, with every local path it names mounted read-only
pipdir="$STATE/pip"
rm -rf "$pipdir" && mkdir -p "$pipdir"
volumes=(--volume "$PWD/$pipdir:/etc/xdg/pip:ro")
.venv/bin/python deploy/buildah/pip_config.py "$pipdir" /etc/xdg/pip >"$pipdir/mounts"
while read -r path; do volumes+=(--volume "$path:$path:ro"); done <"$pipdir/mounts"

torch_index=()
if ! getent hosts download.pytorch.org >/dev/null; then
    # PyTorch's CPU index is out of reach: torch from pip's own indexes, i.e. the same version's CUDA build
    echo "note: download.pytorch.org is unreachable; the worker takes torch from pip's configured indexes"
    torch_index=(--build-arg TORCH_INDEX_URL=)
fi

build() { # target, context
    local begin log
    begin=$(date +%s.%N)
    log="$STATE/build-$1.log"
    echo "==> building $1 (log: $log)"
    if ! buildah build --isolation chroot --network host --ulimit nproc=32768:32768 --layers --format docker \
        "${volumes[@]}" "${torch_index[@]}" --target "$1" --tag "imgcls-$1:local" --file "$PWD/Dockerfile" "$2" \
        >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        fail "building $1 failed (whole log: $log)"
    fi
    timing "build-$1-s" "$(since "$begin")"
}

for target in "${TARGETS[@]}"; do
    build "$target" "$PWD"
done
for target in "${TARGETS[@]}"; do
    timing "size-$target" "$(buildah images --noheading --format '{{.Size}}' "imgcls-$target:local" | tr -d ' ')"
done

[ "$SMOKE" = 1 ] || { timing containers-sh-s "$(($(date +%s) - started))"; exit 0; }

# ---- a change to service/ alone rebuilds the source layers only: built from a copy of the tracked files
# with one line added to a file under service/, every dependency step must come from the cache
changed=$(mktemp -d)
trap 'rm -rf "$changed"' EXIT
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
    if [ -e "$file" ]; then # (a file deleted but not yet committed is listed too)
        mkdir -p "$changed/$(dirname "$file")" && cp -p "$file" "$changed/$file"
    fi
done
echo "# changed by scripts/containers.sh at $(date +%s%N)" >>"$changed/service/__init__.py" # never cached
begin=$(date +%s.%N)
log="$STATE/build-api-changed.log"
buildah build --isolation chroot --network host --ulimit nproc=32768:32768 --layers --format docker \
    "${volumes[@]}" --target api --tag imgcls-api:changed --file "$PWD/Dockerfile" "$changed" >"$log" 2>&1 \
    || { tail -n 40 "$log" >&2; fail "the rebuild after a change under service/ failed ($log)"; }
timing build-api-after-service-change-s "$(since "$begin")"
.venv/bin/python deploy/buildah/cached_steps.py "$log" || fail "a change under service/ rebuilt dependency layers"
buildah rmi imgcls-api:changed >/dev/null

echo "==> smoke tests (tests/deploy/test_images.py)"
begin=$(date +%s.%N)
IMGCLS_TEST_IMAGES=1 IMGCLS_TIMINGS="$PWD/$STATE/timings.txt" \
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/deploy/test_images.py || fail "the smoke tests of the images failed"
timing smoke-tests-s "$(since "$begin")"
timing containers-sh-s "$(($(date +%s) - started))"
