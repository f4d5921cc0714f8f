#!/usr/bin/env python3
"""Self time per operator in a libtorch profiler trace (chrome://tracing JSON, as written by
torch::autograd::profiler::RecordProfile, e.g. `KTO_BENCH_PROFILE_TRAIN=FILE build/tests/bench_unet demoTrainStep`).

    scripts/trace-self-times.py TRACE.json [--from-op aten::embedding] [--top 25]

An event's self time is its duration less that of the events nested in it on the same thread. --from-op
starts the window at the first call of that operator (the demo trainer's first text-encoder call skips
the latent cache that comes before its steps). Standard library only.
"""
import argparse
import collections
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--from-op", default="", help="start the window at this operator's first call")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    with open(args.trace) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    events = [e for e in events if e.get("ph") == "X" and "dur" in e]
    if not events:
        raise SystemExit(f"{args.trace}: no complete ('X') events")
    if args.from_op:
        starts = [e["ts"] for e in events if e["name"] == args.from_op]
        if not starts:
            raise SystemExit(f"{args.trace}: no call of {args.from_op}")
        events = [e for e in events if e["ts"] >= min(starts)]
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[e.get("tid")].append(e)
    self_us = collections.Counter()
    calls = collections.Counter()
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        child = [0.0] * len(thread_events)
        stack = []
        for i, e in enumerate(thread_events):
            while stack and thread_events[stack[-1]]["ts"] + thread_events[stack[-1]]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                child[stack[-1]] += e["dur"]
            stack.append(i)
        for i, e in enumerate(thread_events):
            self_us[e["name"]] += e["dur"] - child[i]
            calls[e["name"]] += 1
    total = sum(self_us.values())
    span = (max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)) / 1e6
    print(f"{len(events)} events over {span:.2f} s; self time {total / 1e3:.1f} ms")
    for name, us in self_us.most_common(args.top):
        print(f"{us / 1e3:10.1f} ms {100 * us / total:5.1f} % {calls[name]:8d}  {name}")


if __name__ == "__main__":
    main()
