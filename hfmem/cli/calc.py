"""``hfmem [calc] MODEL...``: the Model Memory Calculator table, for one model or several side by side."""

from __future__ import annotations

import typer

from ..errors import HfmemError, UsageError
from .errors import error_line
from .options import (AdamRuleOpt, Compat, CompatOpt, Format, FormatOpt, HeadersOnlyOpt, MetaModelOpt, ModelsArg,
                      NoCacheOpt, OfflineOpt, RevisionOpt, TokenOpt, TrustRemoteCodeOpt, source_options, VerboseOpt)
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
    no_cache: NoCacheOpt = False,
) -> None:
    """Print the Model Memory Calculator table: largest layer, total size and training with Adam, for
    float32, float16/bfloat16, int8 and int4."""
    if not models:
        raise UsageError("no model given", hint="e.g. hfmem baichuan-inc/Baichuan-7B")
    from ..api import analyze_many

    opts = source_options(revision, token, offline, trust_remote_code, no_cache, headers_only, verbose=verbose,
                          meta_model=meta_model)
    failures: list[tuple[str, HfmemError]] = []
    # One model: its error is the answer. Several: answer the others, then report each failure.
    reports = analyze_many(models, opts, on_error=(lambda m, e: failures.append((m, e))) if len(models) > 1 else None)
    mode = compat.value
    rule = adam_rule.value if adam_rule else None
    if fmt is Format.json:
        from ..render.json import calculator_json

        print_json(calculator_json(reports, mode, rule, failures))
    elif reports:
        tables = [r.table(mode, rule) for r in reports]
        from ..render import text

        if fmt is Format.markdown:
            print_text(text.markdown(reports, tables))
        elif len(reports) == 1:
            text.rich_single(stdout_console(), reports[0], tables[0])
        else:
            text.rich_many(stdout_console(), reports, tables)
    for _, exc in failures:
        typer.echo(error_line(exc), err=True)
    if failures:
        raise typer.Exit(failures[0][1].exit_code)
