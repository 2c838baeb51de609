#!/usr/bin/env bash
# Edge deployment step for a CI pipeline: build MODEL for every soc, gate on the accuracy verdict,
# and collect the .om files, their manifests, the reproducible atc scripts and the reports into a
# release folder with a SHA256SUMS file.
#
#   usage: deploy.sh MODEL.onnx RELEASE_DIR SOC [SOC ...]
#   extra build flags: ASCEND_QUANT_ARGS="--backend sim --calib data/calib" deploy.sh ...
#
# Exit codes are ascend-quant's: 0 released, 1 accuracy gate failed, 2 bad input, 3 toolchain failure.
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 MODEL.onnx RELEASE_DIR SOC [SOC ...]" >&2
  exit 2
fi
model=$1
release=$2
shift 2

soc_args=()
for soc in "$@"; do soc_args+=(--soc "$soc"); done
# shellcheck disable=SC2206  # word splitting of the extra flags is intended
extra_args=(${ASCEND_QUANT_ARGS:-})

result=$(mktemp)
trap 'rm -f "$result"' EXIT

status=0
ascend-quant build "$model" "${soc_args[@]}" "${extra_args[@]}" --json >"$result" || status=$?
if [ "$status" -eq 1 ]; then
  echo "deploy: FAILED: INT8/FP16 accuracy is below the thresholds; nothing released" >&2
  python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
for s in r["socs"]:
    for c in s["compare"].get("candidates", []):
        if not c.get("passed"):
            print(f"  {s[\"soc\"]}: {c[\"model\"]}: {\"; \".join(c.get(\"failures\", []))}", file=sys.stderr)' "$result" || true
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "deploy: FAILED: ascend-quant build exited with $status; nothing released" >&2
  exit "$status"
fi

# Assemble the release next to its final place, then swap it in, so a failure never leaves half a release.
staging="${release%/}.staging.$$"
rm -rf "$staging"
mkdir -p "$staging"
python3 - "$result" "$staging" <<'PY'
import json
import shutil
import sys
from pathlib import Path

result = json.loads(Path(sys.argv[1]).read_text())
staging = Path(sys.argv[2])
for soc in result["socs"]:
    target = staging / soc["soc"]
    target.mkdir(parents=True)
    for om in soc["artifacts"].values():
        om = Path(om)
        shutil.copy2(om, target / om.name)
        shutil.copy2(om.with_suffix(".json"), target / om.with_suffix(".json").name)
    configs = Path(soc["directory"]) / "configs"
    for item in sorted(configs.iterdir()):
        if item.is_file():
            shutil.copy2(item, target / item.name)
    for report in soc["reports"].values():
        shutil.copy2(report, target / Path(report).name)
(staging / "build.json").write_text(json.dumps(result, indent=2) + "\n")
PY
(cd "$staging" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)

rm -rf "$release"
mv "$staging" "$release"
echo "deploy: released $(find "$release" -name '*.om' | wc -l) model(s) for $* into $release"
