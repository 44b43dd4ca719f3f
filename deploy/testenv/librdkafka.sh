#!/usr/bin/env bash
# Builds librdkafka from Debian 13 (trixie)'s source package into a per-version cache folder
# outside the clone, so the project can link against a librdkafka new enough for Kafka-protocol
# brokers such as Tansu (>= 2.2.0). Debian 12 ships 2.0.2, which is too old.
#
# Usage:   deploy/testenv/librdkafka.sh            # build if needed, print the exports to use
#          eval "$(deploy/testenv/librdkafka.sh --print-env)"   # set PKG_CONFIG_PATH etc.
#
# Environment:
#   AGENTJOBS_CACHE_DIR   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs)
#   LIBRDKAFKA_VERSION    upstream version to build (default: 2.8.0)
#   LIBRDKAFKA_JOBS       make -j value (default: 2)
#
# Why a private apt directory: we only need trixie's *source* index to fetch one source package.
# Adding trixie to the system's sources would make `apt-get upgrade` pull in trixie binaries, so
# the trixie deb-src entry lives in a throw-away apt state directory and never touches /etc/apt.
set -euo pipefail

VERSION="${LIBRDKAFKA_VERSION:-2.8.0}"
CACHE_ROOT="${AGENTJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs}"
PREFIX="$CACHE_ROOT/librdkafka-$VERSION"
JOBS="${LIBRDKAFKA_JOBS:-2}"
STAMP="$PREFIX/.complete"

print_env() {
    echo "export PKG_CONFIG_PATH=\"$PREFIX/lib/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}\""
    echo "export LD_LIBRARY_PATH=\"$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "export AGENTJOBS_LIBRDKAFKA_PREFIX=\"$PREFIX\""
}

log() { echo "[librdkafka.sh] $*" >&2; }

is_complete() {
    [[ -f "$STAMP" && -f "$PREFIX/lib/pkgconfig/rdkafka.pc" && -f "$PREFIX/include/librdkafka/rdkafka.h" ]] \
        && ls "$PREFIX"/lib/librdkafka.so.* >/dev/null 2>&1
}

if [[ "${1:-}" == "--print-env" ]]; then
    if ! is_complete; then
        log "librdkafka $VERSION is not built yet at $PREFIX; run $0 first"
        exit 1
    fi
    print_env
    exit 0
fi

if is_complete; then
    log "librdkafka $VERSION already built at $PREFIX (nothing to do)"
    print_env
    exit 0
fi

SECONDS=0
log "building librdkafka $VERSION into $PREFIX (takes ~3 minutes on 2 cores)"

log "step 1/5: installing build dependencies from Debian's archive"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
BUILD_DEPS=(build-essential dpkg-dev pkg-config python3 zlib1g-dev libssl-dev libsasl2-dev
            libzstd-dev liblz4-dev ca-certificates)
missing=()
for p in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "  installing: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "  all build dependencies present"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/agentjobs-librdkafka.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "step 2/5: fetching trixie's librdkafka source package via a private apt directory"
APTDIR="$WORK/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/sources.list.d" "$APTDIR/preferences.d"
cat > "$APTDIR/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
APT_OPTS=(
    -o "Dir::Etc::SourceList=$APTDIR/sources.list"
    -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
    -o "Dir::Etc::Preferences=$APTDIR/preferences"
    -o "Dir::Etc::PreferencesParts=$APTDIR/preferences.d"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::Cache=$APTDIR/cache"
    -o "Dir::State::status=/var/lib/dpkg/status"
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
)
apt-get "${APT_OPTS[@]}" update -qq
SRC_VERSION="$(apt-cache "${APT_OPTS[@]}" showsrc librdkafka 2>/dev/null \
    | awk '/^Version:/ {print $2}' | grep -E "^([0-9]+:)?${VERSION//./\\.}-" | head -1 || true)"
if [[ -z "$SRC_VERSION" ]]; then
    log "ERROR: trixie has no librdkafka source package for upstream version $VERSION."
    log "Versions available: $(apt-cache "${APT_OPTS[@]}" showsrc librdkafka | awk '/^Version:/ {print $2}' | tr '\n' ' ')"
    exit 1
fi
log "  source package librdkafka=$SRC_VERSION"
(cd "$WORK" && apt-get "${APT_OPTS[@]}" source -qq "librdkafka=$SRC_VERSION" >/dev/null)
SRCDIR="$(find "$WORK" -maxdepth 1 -type d -name "librdkafka-$VERSION*" | head -1)"
if [[ -z "$SRCDIR" || ! -f "$SRCDIR/configure" ]]; then
    log "ERROR: unpacked source tree not found under $WORK"
    exit 1
fi

log "step 3/5: configuring (prefix $PREFIX)"
# Static deps off: we link against Debian 12's shared zlib/ssl/sasl/zstd/lz4. No curl (OIDC) to
# keep dependencies small; SASL PLAIN/SCRAM/GSSAPI, TLS, zstd and lz4 are enabled.
rm -rf "$PREFIX"
(cd "$SRCDIR" && ./configure --prefix="$PREFIX" --disable-curl \
    --enable-ssl --enable-gssapi --enable-zstd --enable-lz4-ext >"$WORK/configure.log" 2>&1) \
    || { log "ERROR: configure failed:"; tail -40 "$WORK/configure.log" >&2; exit 1; }

log "step 4/5: compiling with -j$JOBS (the longest step)"
(cd "$SRCDIR/src" && make -j"$JOBS" >"$WORK/make.log" 2>&1) \
    || { log "ERROR: make failed:"; tail -40 "$WORK/make.log" >&2; exit 1; }
log "  C library built after ${SECONDS}s"

log "step 5/5: installing headers, library and pkg-config file"
(cd "$SRCDIR/src" && make install >"$WORK/install.log" 2>&1) \
    || { log "ERROR: make install failed:"; tail -40 "$WORK/install.log" >&2; exit 1; }
# The static archive and the C++ wrapper are not needed; keep the cache small.
rm -f "$PREFIX"/lib/*.a "$PREFIX"/lib/pkgconfig/rdkafka-static.pc
echo "$SRC_VERSION" > "$STAMP"
log "done in ${SECONDS}s: $PREFIX"
print_env
