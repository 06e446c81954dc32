#!/bin/bash
# Ready this checkout for run.sh on a device machine (Python 3.12, no network), on a machine that
# reaches the package registries. A device call carries the working tree (tracked files that are
# there, untracked ones git does not ignore, shared/, carried folders) up to 64 MiB, and the
# tracked tree alone is about 61 MB, most of it shipped weights and benchmark results that
# training does not read. So this:
#   1. downloads the Python 3.12 wheels of what the device image lacks into .whl/ (ignored; carry
#      it), builds antlr4-python3-runtime's (it has no wheel), and drops dysts' pictures (26 MB);
#   2. copies ../shared/data/{real,eval} into shared/data/ (the general corpus reads the real
#      tables and drops any series found in the evaluation folders);
#   3. moves the tracked weights (but those named in KEEP, e.g. an init_from) and benchmark results
#      out of the working tree into $STASH, and prints what would travel. Commit nothing while
#      prepared: git sees those files as deleted.
# Afterwards, on the device: run(command="cp -r shared /tmp/ && CORPUS=general \
#   EXTRA='corpus@data.corpus=general' bash examples/gpu_session/run.sh", carry=[".whl"]).
# Put them back with:  bash examples/gpu_session/prepare.sh --restore
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
STASH=${STASH:-/tmp/tsfm_gpu_stash}
KEEP=${KEEP:-ttm-96-wide}   # space-separated shipped weights training starts from (init_from)
# the tracked files moved out: every benchmark result and every shipped weight file but KEEP's
moved() {
  git ls-files benchmarks/results
  git ls-files 'tsfm/weights/*/model.safetensors' | grep -v -x -F -f <(for k in $KEEP; do echo "tsfm/weights/$k/model.safetensors"; done) || true
}

if [ "${1:-}" = --restore ]; then
  [ -d "$STASH" ] || { echo "error: nothing to restore: $STASH does not exist" >&2; exit 2; }
  (cd "$STASH" && find . -type f -print0) | while IFS= read -r -d '' f; do
    mkdir -p "$(dirname "$f")"; mv -n "$STASH/$f" "$f"
  done
  left=$(find "$STASH" -type f | wc -l)
  [ "$left" = 0 ] || { echo "error: $left files in $STASH were not moved back (a file of that name is in the tree)" >&2; exit 1; }
  rm -rf "$STASH"; echo "restored the files moved to $STASH"; exit 0
fi
if [ -e "$STASH" ]; then
  echo "error: $STASH exists: this checkout is already prepared; run with --restore first" >&2; exit 2
fi
for k in $KEEP; do
  [ -f "tsfm/weights/$k/model.safetensors" ] || { echo "error: KEEP names '$k', which has no tsfm/weights/$k/model.safetensors" >&2; exit 2; }
done
EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
for p in /.whl/ /shared/; do grep -qxF "$p" "$EXCLUDE" 2>/dev/null || echo "$p" >> "$EXCLUDE"; done

# 1. wheels, at the versions the tests ran with here (those of the README's virtual environment)
VENV_PY=${VENV_PY:-.venv/bin/python}
pin() { "$VENV_PY" -c "import importlib.metadata as m, sys; print(sys.argv[1] + '==' + m.version(sys.argv[1]))" "$1"; }
rm -rf .whl && mkdir .whl   # one version of each package: pip refuses two
PLATFORM="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
PKGS=""
for name in gluonts hydra-core omegaconf pydantic pydantic-core annotated-types typing-inspection typing-extensions \
    pandas pytz tzdata dysts; do
  PKGS="$PKGS $(pin "$name")" || { echo "error: $name is not installed in $VENV_PY's environment" >&2; exit 2; }
done
"$VENV_PY" -m pip download -q --no-deps $PLATFORM -d .whl $PKGS
"$VENV_PY" -m pip wheel -q --no-deps -w .whl "$(pin antlr4-python3-runtime)"
"$VENV_PY" - <<'EOF'
"""Rewrite the dysts wheel without its pictures (and their RECORD lines)."""
import glob, os, zipfile
for path in glob.glob(".whl/dysts-*.whl"):
    tmp = path + ".tmp"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        dropped = {n for n in src.namelist() if n.lower().endswith((".png", ".jpg"))}
        for item in src.infolist():
            if item.filename in dropped:
                continue
            data = src.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(l for l in data.splitlines(True) if l.split(b",")[0].decode() not in dropped)
            dst.writestr(item, data)
    os.replace(tmp, path)
EOF

# 2. data
mkdir -p shared/data
cp -r ../shared/data/real ../shared/data/eval shared/data/
chmod -R u+w shared   # ../shared is read-only; the copy need not be

# 3. what training does not read, out of the tree (tracked files only: ignored ones, such as a
#    benchmark's resume cache, stay where they are)
mkdir -p "$STASH"
moved | while IFS= read -r f; do
  mkdir -p "$STASH/$(dirname "$f")"; mv "$f" "$STASH/$f"
done
git ls-files -z --cached --others --exclude-standard | python3 -c '
import os, sys
files = [f for f in sys.stdin.read().split("\0") if os.path.isfile(f)]
tree = sum(os.path.getsize(f) for f in files)
extra = sum(os.path.getsize(os.path.join(d, f)) for top in ("shared", ".whl") for d, _, fs in os.walk(top) for f in fs)
print(f"would travel: {(tree + extra) / 2**20:.1f} MiB of 64 (working tree {tree / 2**20:.1f}, shared/ and .whl/ {extra / 2**20:.1f})")'
