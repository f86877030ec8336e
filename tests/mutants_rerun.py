"""Re-run named mutmut mutants against chosen tests, in one process (tests/mutants.md, "How").

mutmut's trampolines pick the active mutant from $MUTANT_UNDER_TEST at every call, so one process can
import the mutated tree once and call pytest for mutant after mutant: seconds each instead of a process
start and collection. With no tests named, each mutant gets the tests mutmut's stats say call its function
(mutants/mutmut-stats.json, fastest first); with tests named, those tests (to triage survivors against
tests outside the selection). -x: a mutant is killed at its first failing test.

    cd mutants && ../.venv/bin/python ../tests/mutants_rerun.py OUT.json [TEST ...] < NAMES.txt

OUT.json maps each name to its pytest exit code (0 survived, 1 killed, 33 no test) and seconds; a rerun
skips the names already in it.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())  # mutants/: its mutated scaling, not the editable install's
import scaling  # noqa: E402

if "mutants" not in scaling.__file__:
    print(f"mutants_rerun: run inside mutants/ (scaling imports from {scaling.__file__})", file=sys.stderr)
    sys.exit(2)

import pytest  # noqa: E402


def unknown(names: list[str]) -> list[str]:
    """Names no mutmut run generated (a typo would otherwise read as "no test"): each module's mutants are
    listed in its .meta file beside it."""
    def generated(module: str) -> set[str]:
        path = os.path.join(*module.split(".")) + ".py.meta"
        return set(json.load(open(path))["exit_code_by_key"]) if os.path.exists(path) else set()

    return [n for n in names if n not in generated(n.rsplit(".", 1)[0])]


def main(out: str, tests: list[str], names: list[str]) -> None:
    if missing := unknown(names):
        print(f"mutants_rerun: {len(missing)} name(s) no mutmut run generated, e.g. {missing[0]}", file=sys.stderr)
        sys.exit(2)
    stats = json.load(open("mutmut-stats.json")) if not tests else None
    done = json.load(open(out)) if os.path.exists(out) else {}
    for name in names:
        if name in done:
            continue
        chosen = tests
        if stats is not None:
            function = name.rsplit("__mutmut_", 1)[0]
            duration = stats["duration_by_test"]
            chosen = sorted(stats["tests_by_mangled_function_name"].get(function, []), key=lambda t: duration.get(t, 0))
        start = time.time()
        if chosen:
            os.environ["MUTANT_UNDER_TEST"] = name
            rc = int(pytest.main(["-x", "-q", "--timeout", "300", *chosen]))
        else:
            rc = 33
        done[name] = {"rc": rc, "s": round(time.time() - start, 1)}
        with open(out, "w") as f:
            json.dump(done, f, indent=1)
        print(f"{name} {rc} {done[name]['s']}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:], [line.strip() for line in sys.stdin if line.strip()])
