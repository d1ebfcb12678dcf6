#!/usr/bin/env bash
# Fuzz the bridge's readers of outside bytes with atheris (coverage-guided, libFuzzer):
#   fuzz/declaration_reader.py  MQTT declaration events and WCO DEC-DMS declarations
#   fuzz/national_mapper.py     national licence files through the three mappings
#
#   bash scripts/fuzz.sh [SECONDS] [--keep-going] [TARGET...]
#
# SECONDS per target (default 20). The documented full run is 600 s per target with
# --keep-going, which restarts a target after a finding (keeping its corpus) until its time is
# spent, so that one bug does not hide the next. Work files go to build/fuzz/<target>/: corpus/
# (seeded from the shared WCO samples and mappings/samples, grown by the fuzzer), findings/
# (the inputs that crashed or hung: crash-*, timeout-*, oom-*, slow-unit-*), log.txt.
# Prints the executions and findings per target, each finding replayed alone and grouped by
# what it does (`python -m fuzz.TARGET --triage FILE...`); exits 1 when anything was found.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
keep_going=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --keep-going) keep_going=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        ''|*[!0-9]*) targets+=("$arg") ;;
        *) seconds="$arg" ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(declaration_reader national_mapper)

python=.venv/bin/python
[ -x "$python" ] || python=python3
"$python" -c 'import atheris' 2>/dev/null || {
    echo "atheris is not installed (bash scripts/setup.sh installs the dev tools)" >&2
    exit 2
}

status=0
for target in "${targets[@]}"; do
    [ -f "fuzz/$target.py" ] || { echo "no fuzz target fuzz/$target.py" >&2; exit 2; }
    work="build/fuzz/$target"
    mkdir -p "$work/corpus" "$work/findings"
    "$python" -m "fuzz.$target" --write-seeds "$work/corpus" >/dev/null 2>&1
    "$python" -m "fuzz.$target" --write-dict "$work/tokens.dict" >/dev/null 2>&1
    : >"$work/log.txt"
    touch "$work/.started"
    before=$(find "$work/findings" -type f | wc -l)
    executions=0
    runs=0
    started=$(date +%s)
    while :; do
        left=$((seconds - ($(date +%s) - started)))
        [ "$left" -gt 0 ] || break
        runs=$((runs + 1))
        set +e
        "$python" -m "fuzz.$target" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -dict="$work/tokens.dict" -artifact_prefix="$work/findings/" \
            "$work/corpus" \
            >"$work/run.txt" 2>&1
        code=$?
        set -e
        cat "$work/run.txt" >>"$work/log.txt"
        done_now=$(grep -a 'stat::number_of_executed_units' "$work/run.txt" | awk '{print $2}')
        executions=$((executions + ${done_now:-0}))
        [ "$code" -eq 0 ] && break
        # A finding: never replay it from the corpus, then stop or go on looking.
        for found in "$work"/findings/*; do
            name=$(basename "$found")
            rm -f "$work/corpus/${name#*-}"
        done
        [ "$keep_going" -eq 1 ] || break
    done
    rm -f "$work/run.txt"
    found=$(($(find "$work/findings" -type f | wc -l) - before))
    elapsed=$(($(date +%s) - started))
    echo "== $target: $executions executions in ${elapsed} s ($runs run(s)), $found finding(s)"
    grep -a '^known finding' "$work/log.txt" | sort -u | sed 's/^/   /' || true
    if [ "$found" -gt 0 ]; then
        status=1
        # Replay each new finding alone (at most 20) and group them by what they do now.
        mapfile -t new < <(find "$work/findings" -type f -newer "$work/.started" | sort | head -20)
        echo "   findings in $work/findings/, replayed one by one (at most 20):"
        "$python" -m "fuzz.$target" --triage "${new[@]}" 2>/dev/null \
            | sed 's/^[a-z-]*-[0-9a-f]*: //' | sort | uniq -c | sed 's/^/   /'
    fi
done
exit $status
