#!/usr/bin/env python3
"""Sorts ThreadSanitizer reports (TSAN_OPTIONS=log_path=DIR/log) by where the unseen
synchronisation lives, and prints in full every report that is not such a hand-off.

  python3 tests/sanitizers/tsan_triage.py DIR/log.*

Debian's Qt, glib and libtorch are not built with TSan: a hand-off through their mutexes (a queued
call, a thread-pool task, an event-loop wakeup, a gloo work item) is invisible to it, so both sides
of such a hand-off are reported as a race. A report counts as a hand-off only if one of its two
accesses is an object's birth or death (new/delete, malloc/free), a synchronisation call, or code
inside one of those libraries; a race between two plain accesses in our own code is never one, and
is printed. docs/HARDENING.md says why each pattern is a hand-off.
"""
import collections
import re
import sys

PATTERNS = [
    ("gloo / c10d work completion inside libtorch", lambda b: "ProcessGroupGloo" in b or "c10d::" in b),
    ("Qt Test's watchdog thread at exit", lambda b: "QWaitCondition::~QWaitCondition" in b or "QTest::qRun" in b),
    ("glib event-loop wakeup (eventfd)", lambda b: "eventfd" in b and "libglib" in b),
    ("Qt thread-pool task hand-off (QtConcurrent, QRunnable, QFutureWatcher)",
     lambda b: any(k in b for k in ("QtConcurrent", "QRunnable", "QThreadPool", "Thread (pooled)", "ResultStoreBase"))),
    ("Qt-internal: queued call, implicit sharing, threaded image code",
     lambda b: re.search(r"libQt6(Core|Gui|Widgets)", b) is not None),
]


LIFETIME = re.compile(r"^(operator new|operator delete|malloc|free|calloc|realloc|pthread_\w+|eventfd|write|read|"
                      r"memcpy|memmove|memset)\b")
LIBRARIES = re.compile(r"\((lib(Qt6\w+|torch\w*|c10\w*|glib[-\w.]*|gomp|stdc\+\+))\.so")


def accesses(block):
    """Frame #0 of each racing access (interceptor frames name the call), with its module."""
    out = []
    for part in re.split(r"\n  (?=(?:Previous )?(?:atomic )?(?:[Rr]ead|[Ww]rite) of size)", block)[1:3]:
        frames = re.findall(r"^\s+#(\d+) (.*)$", part, re.M)
        if frames:
            out.append(frames[0][1])
    return out


# Code that runs on one side of a hand-off through Qt's queues: Qt's templates instantiated in our
# binaries (a queued functor, a thread-pool task, a future's results), and StoreService's post()
# and deliver(), which hand a functor to the store thread / the GUI thread with
# QMetaObject::invokeMethod (queued).
HANDOFF_CODE = re.compile(r"^(QtConcurrent::|QtPrivate::QFunctorSlotObject|QtPrivate::ResultStore|QFutureWatcher|"
                          r"QMetaCallEvent|kto::ui::StoreService::(post|deliver)\()")


def is_handoff_side(frame):
    return (LIFETIME.match(frame) is not None or LIBRARIES.search(frame) is not None
            or HANDOFF_CODE.match(frame) is not None)


def reports(paths):
    for path in paths:
        with open(path, errors="replace") as f:
            for block in f.read().split("==================\n"):
                if "WARNING: ThreadSanitizer" in block:
                    yield path, block


def main(paths):
    counts = collections.Counter()
    unexplained = []
    for path, block in reports(paths):
        if not any(is_handoff_side(f) for f in accesses(block)):
            unexplained.append((path, block))
            continue
        for name, matches in PATTERNS:
            if matches(block):
                counts[name] += 1
                break
        else:
            unexplained.append((path, block))
    for name, _ in PATTERNS:
        print(f"{counts[name]:6d}  {name}")
    print(f"{len(unexplained):6d}  not explained by these (printed below)")
    for path, block in unexplained:
        print(f"\n--- {path}\n{block}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
