"""The ``pneumoscope`` command: one thin entry, each subcommand calls one module.

Heavy libraries are imported inside each subcommand, so ``pneumoscope --help`` is instant and
``serve`` imports only what serving needs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence
from pneumoscope.errors import UserError


def _data_summary(args: argparse.Namespace) -> int:
    from pneumoscope.data.explore import write_summary

    write_summary(Path(args.root), Path(args.out))
    return 0


def _train(args: argparse.Namespace) -> int:
    from pneumoscope.config import load_config
    from pneumoscope.training import train

    overrides = {}
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.limit_train_batches is not None:
        overrides["train.limit_train_batches"] = args.limit_train_batches
    config = load_config(args.config, **overrides)
    out = Path(args.out) if args.out else Path("runs") / config.name
    devices: int | str = int(args.devices) if str(args.devices).isdigit() else args.devices
    run_dir = train(
        config, out, root=args.data, accelerator=args.accelerator, devices=devices,
        num_nodes=args.num_nodes, strategy=args.strategy, progress=not args.no_progress,
        reuse_members=args.reuse_members,
    )
    if run_dir is not None:
        from pneumoscope.models.bundle import read_record

        record = read_record(run_dir)
        val = record.validation
        print(
            f"run folder: {run_dir}\n"
            f"validation (patient-level, n={val.n}): AUC {val.auc:.4f}  accuracy {val.accuracy:.4f}  "
            f"sensitivity {val.sensitivity:.4f}  specificity {val.specificity:.4f}  "
            f"threshold {record.threshold:.4f}  ({record.training.get('train_seconds', 0):.0f} s)"
        )
    return 0


def _finalize(args: argparse.Namespace) -> int:
    from pneumoscope.config import load_config, parse_record
    from pneumoscope.finalize import refinalize

    threshold, ood = None, None
    command = "pneumoscope finalize --model " + args.model
    if args.threshold_from:
        threshold = load_config(args.threshold_from).threshold
        command += " --threshold-from " + args.threshold_from
    if args.ood_from:
        ood = load_config(args.ood_from).ood
        command += " --ood-from " + args.ood_from
    record = parse_record(refinalize(Path(args.model), command=command, threshold=threshold, ood=ood))
    val = record.validation
    print(f"{args.model}: threshold {record.threshold:.4f}, temperature {record.temperature:.3f}, "
          f"validation AUC {val.auc:.4f}, confusion matrix {val.confusion_matrix}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pneumoscope.evaluation.report import evaluate

    evaluate(args.root, split=args.split, model=args.model, out=Path(args.out), threshold=args.threshold)
    return 0


def _stress(args: argparse.Namespace) -> int:
    from pneumoscope.evaluation.stress import run_stress, stress_comparison, stress_table

    families = tuple(args.families.split(",")) if args.families else None
    command = "pneumoscope " + " ".join(sys.argv[1:]) if sys.argv[1:] else "pneumoscope stress"
    models = args.model or [None]
    reports = []
    for model in models:
        out = Path(args.out) if len(models) == 1 else Path(args.out) / Path(model or "default").name
        reports.append(run_stress(args.root, split=args.split, model=model, out=out,
                                  per_class=args.per_class, seed=args.seed, families=families,
                                  originals=args.originals))
    if len(reports) > 1:
        path = stress_comparison(reports, Path(args.out), command=command)
        print(f"comparison: {path}")
    if args.card:  # each model's own table into its own card
        from pneumoscope.models.card import add_card_section

        for report in reports:
            folder = Path(report["model"]["path"])
            body = (f"Command: `{command}`; {report['data']['n_used']} images, seed {args.seed}. "
                    f"Figures at this model's threshold {report['model']['threshold']:.4f}.\n\n{stress_table(report)}\n")
            add_card_section(folder, "Robustness: the stress report (pneumoscope stress)", body)
            print(f"card: {folder / 'MODEL_CARD.md'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pneumoscope.evaluation.report import compare

    *models, root = args.items
    if not models:
        raise UserError("compare needs at least one model (a run folder or a bundled model) and a data ROOT")
    compare(models, root, split=args.split, out=Path(args.out))
    return 0


def _leakage(args: argparse.Namespace) -> int:
    from pneumoscope.evaluation.leakage import run_leakage_study

    run_leakage_study(Path(args.data), Path(args.out), epochs=args.epochs)
    return 0


def _predict(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        from pneumoscope.config import ScaleConfig
        from pneumoscope.inference.distributed import run_ray

        if (args.batch_size is not None and args.batch_size < 1) or (args.actors is not None and args.actors < 1):
            raise UserError("--batch-size and --actors must be at least 1")
        sizes = {} if args.batch_size is None else {"batch_size": args.batch_size}
        config = ScaleConfig(address=args.address, actors=args.actors, **sizes)
        return run_ray(args.paths, manifests=args.manifest or (), model=args.model, recursive=args.recursive,
                       out=args.out, heatmaps=args.heatmaps, config=config)
    if args.address or args.actors:
        raise UserError("--address and --actors are for --engine ray")
    from pneumoscope.inference.batch import run_batch
    from pneumoscope.inference.distributed import is_parquet
    from pneumoscope.inference.sources import is_uri, manifest_entries

    paths = list(args.paths) + manifest_entries(args.manifest or ())
    if not paths:
        raise UserError("nothing to score: name files, folders or a --manifest")
    if any(is_uri(str(p)) for p in [*paths, args.out or ""]):
        raise UserError("storage URIs (file://, s3://, gs://) need --engine ray")
    if is_parquet(args.out):
        raise UserError("Parquet output needs --engine ray; the local engine writes .csv, .json or .jsonl")
    return run_batch(
        paths, model=args.model, recursive=args.recursive, out=args.out,
        heatmaps=args.heatmaps, batch_size=args.batch_size, workers=args.workers,
        decode_timeout=args.decode_timeout,
    )


def _export(args: argparse.Namespace) -> int:
    from pneumoscope.inference.export import export_onnx

    path = export_onnx(args.model, Path(args.onnx))
    print(f"wrote {path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pneumoscope.app import serve

    serve(
        model=args.model, host=args.host, port=args.port, examples=args.examples,
        auth=args.auth, share=args.share,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pneumoscope", description="Pneumonia detection on chest X-rays.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="explore a chest X-ray collection")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    summary = data_sub.add_parser("summary", help="counts, patients, sizes, duplicates, figures")
    summary.add_argument("root", help="Kaggle-layout root or a NORMAL/ PNEUMONIA/ folder")
    summary.add_argument("--out", required=True, help="folder for summary.json, summary.md and figures")
    summary.set_defaults(func=_data_summary)

    train = sub.add_parser("train", help="train a model from a config")
    train.add_argument("--config", required=True, help="YAML config (configs/*.yaml); an ensemble config trains "
                       "each missing member, then combines them")
    train.add_argument("--data", help="Kaggle-layout root (default: the config's data.root)")
    train.add_argument("--out", help="run folder (default: runs/NAME)")
    train.add_argument("--accelerator", default="cpu", help="cpu, gpu or auto (Lightning)")
    train.add_argument("--devices", default="1", help="devices per node (Lightning)")
    train.add_argument("--num-nodes", type=int, default=1, help="machines taking part (Lightning; with --strategy ddp)")
    train.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, ... (Lightning)")
    train.add_argument("--epochs", type=int, help="override train.epochs")
    train.add_argument("--limit-train-batches", type=float, help="override train.limit_train_batches")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    train.add_argument("--reuse-members", metavar="MODEL_DIR",
                       help="ensemble config: first unpack this combined ensemble's members (e.g. the bundled "
                       "model) into their run folders, so that only missing members are trained")
    train.set_defaults(func=_train)

    finalize = sub.add_parser(
        "finalize", help="recompute a saved model's calibration, threshold and OOD statistics (same weights)"
    )
    finalize.add_argument("--model", required=True, help="run folder or model folder (rewritten in place)")
    finalize.add_argument("--threshold-from", metavar="CONFIG",
                          help="use this config's threshold rule instead of the model's own (same weights)")
    finalize.add_argument("--ood-from", metavar="CONFIG",
                          help="use this config's not-a-chest-X-ray settings (ood:) instead of the model's own")
    finalize.set_defaults(func=_finalize)

    evaluate = sub.add_parser("evaluate", help="metrics, report and figures of a model on a split")
    evaluate.add_argument("root", help="Kaggle-layout root, a NORMAL/ PNEUMONIA/ folder, or a run's split_manifest.csv")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"],
                          help="which split of ROOT (or which rows of a manifest)")
    evaluate.add_argument("--model", help="run folder or model folder (default: the bundled model)")
    evaluate.add_argument("--threshold", type=float, help="override the model's stored threshold")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json, report.md and figures")
    evaluate.set_defaults(func=_evaluate)

    stress = sub.add_parser(
        "stress", help="robustness report: the model on perturbed copies (crops, squeeze, resolution, exposure, ...)"
    )
    stress.add_argument("root", help="Kaggle-layout root, a NORMAL/ PNEUMONIA/ folder, or a run's split_manifest.csv")
    stress.add_argument("--split", default="val", choices=["train", "val", "test"],
                        help="which split of ROOT (or which rows of a manifest)")
    stress.add_argument("--model", action="append",
                        help="run folder or model folder (default: the bundled model); repeat to compare several")
    stress.add_argument("--out", required=True, help="folder for stress.json, stress.md and stress.png")
    stress.add_argument("--per-class", type=int, help="use only the first N images of each class")
    stress.add_argument("--seed", type=int, default=0, help="seed of the random parts of the perturbations")
    stress.add_argument("--families", help="comma-separated subset of perturbation families (default: all)")
    stress.add_argument("--card", action="store_true", help="also record each model's table in its own card")
    stress.add_argument("--originals", help="folder of full-resolution films whose 224 px copies are in the training "
                        "folder (the shared data's originals/): each pair compared through the upload path")
    stress.set_defaults(func=_stress)

    compare = sub.add_parser("compare", help="several models side by side on the same images")
    compare.add_argument("items", nargs="+", metavar="RUN_OR_MODEL... ROOT", help="models, then a data root or a split_manifest.csv")
    compare.add_argument("--split", default="test", choices=["train", "val", "test"],
                         help="which split of ROOT (or which rows of a manifest)")
    compare.add_argument("--out", required=True, help="folder for comparison.json and comparison.md")
    compare.set_defaults(func=_compare)

    leakage = sub.add_parser("leakage", help="image-level vs patient-level split: how much leakage inflates scores")
    leakage.add_argument("--data", default="../shared/data/chest_xray", help="Kaggle-layout root")
    leakage.add_argument("--epochs", type=int, default=3, help="epochs of each of the two trainings")
    leakage.add_argument("--out", required=True, help="folder for leakage.json and leakage.md")
    leakage.set_defaults(func=_leakage)

    predict = sub.add_parser("predict", help="predict files and folders")
    predict.add_argument("paths", nargs="*", help="image files (PNG, JPEG, DICOM, ...) and folders of them; "
                         "with --engine ray also URIs (file://, s3://, gs://)")
    predict.add_argument("--manifest", action="append", metavar="FILE",
                         help="CSV (a 'path' column) or text (one path or URI a line) of inputs; repeatable")
    predict.add_argument("--model", help="run folder, model folder or .onnx (default: the bundled model)")
    predict.add_argument("--recursive", action="store_true", help="also look in the folders' subfolders")
    predict.add_argument("--out", help="results.csv, results.json or results.jsonl (default: CSV on stdout); "
                         "with --engine ray, results.parquet: a folder of parts that a rerun resumes")
    predict.add_argument("--engine", choices=["local", "ray"], default="local",
                         help="local: this machine's processes; ray: a Ray cluster (pip install \"pneumoscope[scale]\")")
    predict.add_argument("--address", help="with --engine ray: auto (this machine's cluster) or ray://HOST:10001 "
                         "(default: start Ray in this process)")
    predict.add_argument("--actors", type=int, help="with --engine ray: scoring actors (default: half the cluster's CPUs)")
    predict.add_argument("--heatmaps", help="folder for Grad-CAM overlay PNGs")
    predict.add_argument("--batch-size", type=int, default=None, help="images scored together (default: 8)")
    predict.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores)")
    predict.add_argument("--decode-timeout", type=float, default=120.0,
                         help="seconds a file may take to decode before it becomes an error row")
    predict.set_defaults(func=_predict)

    export = sub.add_parser("export", help="export the model to ONNX")
    export.add_argument("--model", help="run folder or model folder (default: the bundled model)")
    export.add_argument("--onnx", required=True, help="the .onnx file to write")
    export.set_defaults(func=_export)

    serve = sub.add_parser("serve", help="the web app")
    serve.add_argument("--model", help="run folder, model folder or .onnx (default: the bundled model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    serve.add_argument("--port", type=int, default=7860, help="port to listen on")
    serve.add_argument("--examples", help="folder of example images to offer (default: the four credited radiographs shipped in the package)")
    serve.add_argument("--auth", help="USER:PASS for basic auth")
    serve.add_argument("--share", action="store_true", help="ask Gradio for a public link (off by default)")
    serve.set_defaults(func=_serve)
    for subparsers in (sub, data_sub):
        for command in subparsers.choices.values():
            command.formatter_class = _DefaultsShown
    return parser


class _DefaultsShown(argparse.HelpFormatter):
    """Help that states each option's real default, and stays quiet where there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" not in text and action.option_strings and not action.required
                and action.default is not None and action.default is not False
                and action.default != argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pneumoscope")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    from pneumoscope.errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UserError, *USER_ERRORS) as exc:
        print(f"pneumoscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
