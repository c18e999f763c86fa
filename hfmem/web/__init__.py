"""hfmem's web app (``hfmem serve``): a Gradio Blocks app over ``hfmem.api``; ``build_app`` makes it.

Only ``hfmem.web.app`` imports gradio, and only when the app is built; ``state`` and ``handlers`` are pure.
"""


def build_app(options=None):
    """The Gradio Blocks app (imports gradio)."""
    from .app import build_app as build

    return build(options)
