"""`onnxforge bundle DIR... OUT --target T` (write a bundle) and `onnxforge bundle --verify OUT` (check one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.bundle.build import MOBILE_OPTIMIZATIONS, TARGETS, BundleRequest, bundle
from onnxforge.bundle.manifest import verify
from onnxforge.cli.output import print_json
from onnxforge.errors import EXIT_OK, BadInput


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The bundle sub-command."""
    command = commands.add_parser("bundle", help="package folders for a consumer (web, mobile, genai, server) "
                                  "with a manifest; --verify re-checks a bundle")
    command.add_argument("paths", metavar="DIR... OUT", nargs="+",
                         help="the folders to bundle, then the output folder (with --verify: the bundle)")
    command.add_argument("--target", choices=TARGETS, help="who reads the bundle")
    command.add_argument("--runtime", metavar="VERSION",
                         help="oldest ONNX Runtime the graphs must load in (web default 1.30, what onnxruntime-node "
                              "and onnxruntime-web ship)")
    command.add_argument("--mobile-optimization", choices=MOBILE_OPTIMIZATIONS, default="fixed",
                         help="ORT format optimisation style (default %(default)s)")
    command.add_argument("--verify", action="store_true", help="re-check a bundle's files and graphs against its "
                         "manifest")
    command.add_argument("--force", action="store_true", help="replace OUT if it exists")
    command.add_argument("--json", action="store_true", help="print the manifest (or the problems) as JSON")
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write or verify a bundle; print a summary (or JSON)."""
    if args.verify:
        return _verify(args)
    if args.target is None or len(args.paths) < 2:
        raise BadInput("give the folders, then OUT, and --target (web, mobile, genai or server); or --verify OUT")
    *folders, out = (Path(p) for p in args.paths)
    manifest = bundle(BundleRequest(tuple(folders), out, args.target, args.runtime, args.mobile_optimization,
                                    args.force))
    if args.json:
        print_json(manifest)
        return EXIT_OK
    total = sum(entry["bytes"] for entry in manifest["files"])
    graphs = ", ".join(f"{g['path']} (ONNX Runtime >= {g['minimum_onnxruntime']})" for g in manifest["graphs"])
    print(f"wrote the {args.target} bundle {out}: {len(manifest['files'])} files, {total / 2**20:.1f} MiB; {graphs}; "
          "greedy tokens identical to the source folders")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    if len(args.paths) != 1:
        raise BadInput("--verify takes one bundle folder")
    problems = verify(Path(args.paths[0]))
    if args.json:
        print_json({"bundle": args.paths[0], "problems": problems})
    if problems:
        raise BadInput(f"{args.paths[0]} does not match its manifest: {'; '.join(problems[:5])}"
                       + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "") + ": rebuild the bundle")
    if not args.json:
        print(f"{args.paths[0]}: every file and graph matches manifest.json")
    return EXIT_OK
