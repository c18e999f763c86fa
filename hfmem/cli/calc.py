"""``hfmem [calc] MODEL...``: the Model Memory Calculator table, for one model or several side by side."""

from __future__ import annotations

import typer

from ..errors import HfmemError, UsageError
from .errors import error_line
from .options import (AdamRuleOpt, Compat, CompatOpt, Format, FormatOpt, HeadersOnlyOpt, MetaModelOpt, ModelsArg,
                      NoCacheOpt, OfflineOpt, QuietOpt, RevisionOpt, TokenOpt, TrustRemoteCodeOpt, source_options, VerboseOpt)
from .output import print_json, print_text, stdout_console


def calc(
    models: ModelsArg,
    revision: RevisionOpt = None,
    token: TokenOpt = None,
    offline: OfflineOpt = False,
    verbose: VerboseOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
    headers_only: HeadersOnlyOpt = False,
    meta_model: MetaModelOpt = False,
    compat: CompatOpt = Compat.exact,
    adam_rule: AdamRuleOpt = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Print the Model Memory Calculator table: largest layer, total size and training with Adam, for
    float32, float16/bfloat16, int8 and int4."""
    if not models:
        raise UsageError("no model given", hint="e.g. hfmem baichuan-inc/Baichuan-7B")
    from ..api import analyze_many

    opts = source_options(revision, token, offline, trust_remote_code, no_cache, headers_only, verbose=verbose,
                          meta_model=meta_model, quiet=quiet)
    from ..api import analyze_gguf
    from ..errors import GGUFRepoError
    from .llamacpp import is_gguf_ref

    failures: list[tuple[str, HfmemError]] = []
    gguf_models = [m for m in models if is_gguf_ref(m)]

    def failed(m: str, e: HfmemError) -> None:
        if isinstance(e, GGUFRepoError):  # a Hub repo of GGUF files only: its variants are the rows
            gguf_models.append(m)
        elif len(models) > 1:
            failures.append((m, e))
        else:
            raise e

    # One model: its error is the answer. Several: answer the others, then report each failure.
    reports = analyze_many([m for m in models if m not in gguf_models], opts, on_error=failed)
    gguf_repos = []
    for m in sorted(gguf_models, key=models.index):
        try:
            gguf_repos.append(analyze_gguf(m, opts))
        except HfmemError as exc:
            if len(models) == 1:
                raise
            failures.append((m, exc))
    mode = compat.value
    rule = adam_rule.value if adam_rule else None
    from ..render import gguf_calc

    if fmt is Format.json:
        from ..render.json import calculator_json

        doc = calculator_json(reports, mode, rule, failures)
        if gguf_repos:
            doc["gguf_models"] = [gguf_calc.gguf_calc_json(r) for r in gguf_repos]
        print_json(doc)
    else:
        if gguf_repos:  # GGUF repos first: one table of variants each
            if fmt is Format.markdown:
                print_text(gguf_calc.markdown_gguf(gguf_repos))
            else:
                gguf_calc.rich_gguf(stdout_console(), gguf_repos)
        if reports:
            _tables(fmt, reports, mode, rule)
    for _, exc in failures:
        typer.echo(error_line(exc), err=True)
    if failures:
        raise typer.Exit(failures[0][1].exit_code)


def _tables(fmt, reports, mode, rule) -> None:
    """The calculator tables of the transformers-style reports, as table or Markdown."""
    from ..render import text

    tables = [r.table(mode, rule) for r in reports]
    if fmt is Format.markdown:
        print_text(text.markdown(reports, tables))
    elif len(reports) == 1:
        text.rich_single(stdout_console(), reports[0], tables[0])
    else:
        text.rich_many(stdout_console(), reports, tables)
