#!/usr/bin/env bash
# Builds librdkafka from the upstream tarball Debian publishes (testing, or unstable) into a
# per-version cache folder outside the clone: Debian 12 ships 2.0.2, too old for Kafka-protocol
# brokers such as Tansu (see KafkaRuntime.minimumVersion).
#
# One change is applied to the source, marked in the stamp file: a leader hint in a Fetch response
# (KIP-951) whose topic has a zero topic id leaves librdkafka looking its topic up by a null name,
# and the client crashes in its own thread (strcmp in rd_kafka_metadata_update_op, still so in
# 2.15.0). Tansu answers that way for the partitions of a topic it lost in a restart, so every role
# reading from it died with SIGSEGV after a broker restart. The hint is skipped instead; the next
# metadata refresh finds the leader. Apache Kafka always sends the topic id there.
#
# Usage:   deploy/testenv/librdkafka.sh            # build if needed, print the exports to use
#          eval "$(deploy/testenv/librdkafka.sh --print-env)"   # set PKG_CONFIG_PATH etc.
#
# Environment:
#   AGENTJOBS_CACHE_DIR   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs)
#   LIBRDKAFKA_VERSION    upstream version to build (default: 2.14.2)
#   LIBRDKAFKA_JOBS       make -j value (default: 2)
#
# Why a private apt directory: we only need a newer suite's *source* index to fetch one source
# package. Adding that suite to the system's sources would make `apt-get upgrade` pull in its
# binaries, so the deb-src entries live in a throw-away apt state directory and never touch /etc/apt.
set -euo pipefail

VERSION="${LIBRDKAFKA_VERSION:-2.14.2}"
CACHE_ROOT="${AGENTJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs}"
PREFIX="$CACHE_ROOT/librdkafka-$VERSION"
JOBS="${LIBRDKAFKA_JOBS:-2}"
STAMP="$PREFIX/.complete"
# Bumped whenever the change applied to the source changes, so that a cached build is redone.
PATCH_LEVEL="null-topic-hint-1"

print_env() {
    echo "export PKG_CONFIG_PATH=\"$PREFIX/lib/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}\""
    echo "export LD_LIBRARY_PATH=\"$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "export AGENTJOBS_LIBRDKAFKA_PREFIX=\"$PREFIX\""
}

log() { echo "[librdkafka.sh] $*" >&2; }

is_complete() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == *"$PATCH_LEVEL"* && -f "$PREFIX/lib/pkgconfig/rdkafka.pc" && -f "$PREFIX/include/librdkafka/rdkafka.h" ]] \
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
log "building librdkafka $VERSION into $PREFIX (about a minute on 2 cores)"

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

log "step 2/5: fetching librdkafka's source package from Debian testing/unstable via a private apt directory"
APTDIR="$WORK/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/sources.list.d" "$APTDIR/preferences.d"
cat > "$APTDIR/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian forky main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
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
    log "ERROR: Debian testing/unstable have no librdkafka source package for upstream version $VERSION."
    log "Versions available: $(apt-cache "${APT_OPTS[@]}" showsrc librdkafka | awk '/^Version:/ {print $2}' | tr '\n' ' ')"
    exit 1
fi
log "  source package librdkafka=$SRC_VERSION"
# The upstream tarball as released, without Debian's patches: they swap the bundled nanopb and
# cJSON for system packages that Debian 12 does not have.
(cd "$WORK" && apt-get "${APT_OPTS[@]}" source -qq --download-only "librdkafka=$SRC_VERSION" >/dev/null)
ORIG="$(find "$WORK" -maxdepth 1 -name "librdkafka_$VERSION.orig.tar.*" | head -1)"
if [[ -z "$ORIG" ]]; then
    log "ERROR: the upstream tarball librdkafka_$VERSION.orig.tar.* was not downloaded"
    exit 1
fi
mkdir -p "$WORK/src"
tar -xf "$ORIG" -C "$WORK/src"
SRCDIR="$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d | head -1)"
if [[ -z "$SRCDIR" || ! -f "$SRCDIR/configure" ]]; then
    log "ERROR: unpacked source tree not found under $WORK/src"
    exit 1
fi

# The change described at the top: a hint without topic id or name is skipped.
METADATA_C="$SRCDIR/src/rdkafka_metadata.c"
perl -0pi -e 's/(\n(\s*)\} else \{\n(\s*)rkmce = rd_kafka_metadata_cache_find\(\n\s*rk, md->topics\[i\]\.topic, 1\);)/\n$2} else if (!md->topics[i].topic) {\n$3continue; \/* agentjobs: a leader hint naming no topic *\/$1/' "$METADATA_C"
if ! grep -q "agentjobs: a leader hint naming no topic" "$METADATA_C"; then
    log "ERROR: could not apply the null-topic guard to $METADATA_C (has the source changed?)"
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
echo "$SRC_VERSION $PATCH_LEVEL" > "$STAMP"
log "done in ${SECONDS}s: $PREFIX"
print_env
