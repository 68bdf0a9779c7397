"""``python -m fgrad.examples [NAME [ARGS...]]``: list the examples, or run one."""

from __future__ import annotations

import sys

from fgrad.examples import list_examples, run_example


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "list"):
        examples = list_examples()
        width = max(map(len, examples))
        print("usage: python -m fgrad.examples NAME [--help | ARGS...]\n\nexamples:")
        for name, summary in examples.items():
            print(f"  {name:<{width}}  {summary}")
        return 0
    name, rest = argv[0], argv[1:]
    try:
        run_example(name, rest)
    except KeyError as e:
        print(e.args[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
