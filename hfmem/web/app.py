"""The Gradio Blocks app of ``hfmem serve``: five tabs (Calculator, Serving, Fine-tuning, Compare, Search), each a
thin layer over ``hfmem.web.handlers`` (and so over ``hfmem.api``), with its inputs in the page's URL.

Every input, button and output has an ``elem_id`` (``serve-model``, ``serve-run``, ``serve-tables``, ...) so that a
browser test finds it. Opening a link made by "Link to this answer" (``?tab=serve&model=...``) fills that tab's
inputs, selects it and computes the answer on load. Importing this module imports gradio.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry: the app may run with no network

import gradio as gr  # noqa: E402

from . import handlers as H  # noqa: E402
from . import state as S  # noqa: E402

TAB_LABELS = {"calc": "Calculator", "serve": "Serving", "train": "Fine-tuning", "compare": "Compare",
              "search": "Search"}
LABELS = {
    "models": "Model names (Hub ids or folders; several: one per line or comma-separated)",
    "model": "Model name (Hub id, e.g. Qwen/Qwen3-8B)", "dtypes": "Precision", "compat": "Counting",
    "engine": "Engine", "context": "Context (tokens per sequence)", "batch": "Batch (sequences at once)",
    "weights": "Weights format (auto: the checkpoint's)", "kv_dtype": "KV cache dtype", "gpu": "GPU",
    "gpus": "GPU count", "quant": "GGUF quant variant, llama.cpp (e.g. Q4_K_M; empty: the best that fits)",
    "compare_gpus": "More GPUs to draw capacity lines for", "axis": "Plot against",
    "method": "Method", "precision": "Precision (auto: bf16, DeepSpeed's with ZeRO)", "optimizer": "Optimizer",
    "sharding": "Sharding (DeepSpeed ZeRO / torch FSDP)", "seq": "Sequence length", "lora_rank": "LoRA rank",
    "grad_ckpt": "Gradient checkpointing", "job": "Job", "task": "Task (Hub pipeline tag, e.g. text-generation)",
    "text": "Name contains", "max_params": "At most this many parameters (e.g. 14B)", "limit": "Models to scan",
}
CSS = (".hfmem-table td, .hfmem-table th {padding: 2px 8px; text-align: right} .hfmem-table caption {text-align: left}"
       " .hfmem-scroll {overflow-x: auto; max-width: 100%; margin-bottom: 8px}")
# The placeholder the calculator tab starts with (the Model Memory Calculator's own example).
EXAMPLE_MODEL = "baichuan-inc/Baichuan-7B"

# What a tab's run function returns, in this order.
OUTPUTS = ("tables", "text", "error", "snippet", "command", "link", "footnotes")


def _component(tab: str, key: str, f: S.Field):
    ident = f"{tab}-{key}"
    label = LABELS.get(key, key)
    value = list(f.default) if f.kind == "list" else f.default
    if key in ("models", "model"):
        return gr.Textbox(label=label, value="", placeholder=EXAMPLE_MODEL if key == "models" else "Qwen/Qwen3-8B",
                          lines=2 if key == "models" else 1, elem_id=ident)
    if f.kind == "int":
        return gr.Number(label=label, value=value, precision=0, minimum=f.minimum, elem_id=ident)
    if f.kind == "bool":
        return gr.Checkbox(label=label, value=value, elem_id=ident)
    if f.kind == "choice":
        return gr.Dropdown(choices=list(f.choices), value=value, label=label, elem_id=ident)
    if f.kind == "list" and key == "dtypes":
        return gr.CheckboxGroup(choices=list(f.choices), value=value, label=label, elem_id=ident)
    if f.kind == "list":
        return gr.Dropdown(choices=list(f.choices), value=value, multiselect=True, label=label, elem_id=ident)
    return gr.Textbox(label=label, value=value, elem_id=ident)


def _base_url(request) -> str:
    """The page's address without its query: the Referer of the request (the page that sent it)."""
    if request is None:
        return ""
    try:
        ref = request.headers.get("referer") or ""
    except Exception:  # noqa: BLE001
        ref = ""
    return ref.split("?", 1)[0].split("#", 1)[0]


def _shown(tab: str, key: str, value):
    """A decoded value as its component shows it: the models' textbox holds one comma-separated line."""
    return ", ".join(value) if key == "models" else value


def _values(tab: str, comps: dict, data: dict) -> dict:
    return {key: data[c] for key, c in comps.items()}


def answer(tab: str, values: dict, request=None, options=None) -> tuple:
    """The outputs of ``tab`` (``OUTPUTS``) for its input ``values``."""
    try:  # the values as a link holds them: an emptied number box is the CLI's line for a bad --context
        values = {key: S.parse_value(tab, key, v) for key, v in values.items()}
        link = _base_url(request) + S.encode(tab, values)
    except Exception as exc:  # noqa: BLE001 — a value the link cannot hold: the CLI's line
        return "", "", H.error_text(exc), "", "", "", ""
    a = H.HANDLERS[tab](**values, options=options)
    tables = "".join(t.html() for t in a.tables)
    return tables, a.markdown, a.error, a.snippet, a.command, link, a.footnotes


PLOTS = {"serve": H.serving_plot, "train": H.training_plot, "compare": H.compare_plot}


def build_app(options=None) -> gr.Blocks:
    """The Blocks app; ``options``: the ``api.Options`` every answer uses (offline, token)."""
    with gr.Blocks(title="hfmem: GPU memory for Hugging Face models") as demo:
        gr.Markdown("# hfmem — how much GPU memory a Hugging Face model needs\n"
                    "Answers come from hfmem's Python API, the same numbers as the `hfmem` command line; every "
                    "size is also given in exact bytes.")
        inputs: dict[str, dict] = {}
        outputs: dict[str, dict] = {}
        plots: dict[str, tuple] = {}
        with gr.Tabs(selected="calc", elem_id="tabs") as tabs:
            for tab, title in TAB_LABELS.items():
                with gr.Tab(title, id=tab, elem_id=f"tab-{tab}"):
                    spec = S.fields(tab)
                    comps = {}
                    with gr.Row():
                        with gr.Column(scale=1):
                            for key, f in spec.items():
                                comps[key] = _component(tab, key, f)
                            run = gr.Button("Compute", variant="primary", elem_id=f"{tab}-run")
                        with gr.Column(scale=2):
                            error = gr.Textbox(label="Error", elem_id=f"{tab}-error", interactive=False)
                            tables = gr.HTML(elem_id=f"{tab}-tables")
                            text = gr.Markdown(elem_id=f"{tab}-notes")
                            launch_label = "Launch command (hfmem infer --emit vllm / --emit llama.cpp)"
                            snippet = gr.Code(label=launch_label if tab == "serve"
                                              else "Cheapest plan's hfmem train command" if tab == "train"
                                              else "Snippet", language="shell", elem_id=f"{tab}-snippet",
                                              interactive=False, visible=tab in ("serve", "train"))
                            command = gr.Textbox(label="The same answer in the terminal", elem_id=f"{tab}-command",
                                                 interactive=False)
                            link = gr.Textbox(label="Link to this answer", elem_id=f"{tab}-link",
                                              interactive=False)
                            if tab in PLOTS:
                                plot = gr.Plot(elem_id=f"{tab}-plot", label="Plot")
                                plot_note = gr.Markdown(elem_id=f"{tab}-plot-note")
                                plots[tab] = (plot, plot_note)
                            # the command line's footnotes, after the plot: long, and read once
                            with gr.Accordion("What each total predicts, and every assumption", open=True):
                                footnotes = gr.Markdown(elem_id=f"{tab}-footnotes")
                    inputs[tab] = comps
                    outputs[tab] = dict(zip(OUTPUTS, (tables, text, error, snippet, command, link, footnotes)))

                    def run_tab(data: dict, request: gr.Request, tab=tab, comps=comps):
                        return answer(tab, _values(tab, comps, data), request, options)

                    event = run.click(run_tab, inputs=set(comps.values()), outputs=list(outputs[tab].values()))
                    if tab in PLOTS:
                        def run_plot(data: dict, tab=tab, comps=comps):
                            return PLOTS[tab](**_values(tab, comps, data), options=options)

                        event.then(run_plot, inputs=set(comps.values()), outputs=list(plots[tab]))

        all_inputs = [c for tab in TAB_LABELS for c in inputs[tab].values()]
        all_outputs = [c for tab in TAB_LABELS for c in outputs[tab].values()]
        plot_outputs = [c for tab in PLOTS for c in plots[tab]]

        def on_load(request: gr.Request):
            """A link's query fills its tab's inputs, selects the tab and answers; no query: nothing changes."""
            query = dict(request.query_params) if request is not None else {}
            keep = [gr.update()] * (1 + len(all_inputs) + len(all_outputs))
            if not query:
                return keep
            tab = query.get("tab") if query.get("tab") in TAB_LABELS else "calc"
            result: dict = {}
            try:
                tab, values, notes = S.decode_with_notes(query)
            except Exception as exc:  # noqa: BLE001 — a bad value in the link: the CLI's line
                result[outputs[tab]["error"]] = H.error_text(exc)
                values, notes = None, []
            if values is not None:
                for key, c in inputs[tab].items():
                    result[c] = _shown(tab, key, values[key])
                produced = answer(tab, values, request, options)
                for name, v in zip(OUTPUTS, produced):
                    result[outputs[tab][name]] = v
                if notes:
                    result[outputs[tab]["text"]] = "\n".join(f"- {n}" for n in notes) + "\n\n" + produced[1]
            out = [gr.Tabs(selected=tab)]
            out += [result.get(c, gr.update()) for c in all_inputs + all_outputs]
            return out

        def plot_on_load(request: gr.Request):
            query = dict(request.query_params) if request is not None else {}
            out = {c: gr.update() for c in plot_outputs}
            try:
                tab, values = S.decode(query) if query else (None, None)
            except Exception:  # noqa: BLE001 — already reported by on_load
                tab = None
            if tab in PLOTS and values is not None:
                fig, note = PLOTS[tab](**values, options=options)
                out[plots[tab][0]], out[plots[tab][1]] = fig, note
            return [out[c] for c in plot_outputs]

        demo.load(on_load, inputs=None, outputs=[tabs, *all_inputs, *all_outputs]).then(
            plot_on_load, inputs=None, outputs=plot_outputs)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Start the server without blocking (``prevent_thread_lock``); returns what ``Blocks.launch`` returns."""
    return demo.launch(server_name=host, server_port=port, css=CSS, prevent_thread_lock=True, quiet=True,
                       show_error=False, **kwargs)
