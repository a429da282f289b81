"""What a widget package outside ``harmony_lab.widgets`` builds on (the Inspector does).

:class:`StreamingWidget` is the widgets' traffic discipline (nothing is sent while no view is open;
batched, rate-limited updates; ``aclose``), and :func:`esm` / :func:`css` load a built bundle or
stylesheet from ``harmony_lab/widgets/static`` (a path instead of the text under ``ANYWIDGET_HMR=1``).
Notebook users never need this module: the widgets themselves are exported by
``harmony_lab.widgets``.
"""

from harmony_lab.widgets._assets import css, esm, hot_reload, static_dir
from harmony_lab.widgets._base import StreamingWidget

__all__ = ["StreamingWidget", "css", "esm", "hot_reload", "static_dir"]
