"""A static scan of the code a student wrote, for attempts to take points rather than earn them.

Hidden tests are decided outside the student's kernel (:mod:`tinyml_course.grading.verdict`),
so patching a check in the kernel gains nothing by itself. The scan still flags, with the
cell and a reason an instructor can read:

* **rebinding** a name the lab's locked cells import or define (``check_value = ...``);
* **patching a module** (``np.allclose = ...``, ``tinyml_course.checks._fail = ...``,
  ``setattr(module, ...)``) or the builtins;
* **dynamic access** that hides what runs: ``exec``/``eval``/``compile``/``__import__``,
  ``importlib``, ``sys.modules``, frames and ``__globals__``, ``ctypes``, ``gc``, IPython
  magics and shell commands, IPython's display and error hooks, subprocesses, sockets;
* **files outside the submission** named in the code (``solutions/``, the gradebook, an
  absolute path);
* **calling the reference implementation** that an answer is graded against: each lab names
  those functions in its source notebook's metadata (``tinyml_course.forbidden``).

Only cells that are not the lab's own locked cells are scanned (answer cells and cells a
student added).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FindingKind = Literal["tamper", "forbidden"]

_DYNAMIC_CALLS = {
    "exec": "runs code from a string",
    "eval": "runs code from a string",
    "compile": "compiles code from a string",
    "__import__": "imports a module dynamically",
    "setattr": "sets an attribute dynamically",
    "delattr": "deletes an attribute dynamically",
    "globals": "reaches into the notebook's global namespace",
    "locals": "reaches into a namespace",
    "vars": "reaches into a namespace",
    "get_ipython": "uses IPython magics or shell commands (%..., !...)",
    "breakpoint": "starts a debugger",
}
_DYNAMIC_MODULES = {
    "importlib": "imports modules dynamically",
    "ctypes": "calls native code",
    "gc": "walks the interpreter's objects",
    "inspect": "inspects frames and source",
    "builtins": "touches the builtins",
    "subprocess": "runs other programs",
    "socket": "opens network connections",
    "multiprocessing": "starts processes",
    "threading": "starts threads that outlive the cell",
    "signal": "handles signals",
    "pty": "opens terminals",
}
_DYNAMIC_ATTRIBUTES = {
    "modules": "sys",
    "_getframe": "sys",
    "settrace": "sys",
    "setprofile": "sys",
    "system": "os",
    "popen": "os",
    "fork": "os",
    "kill": "os",
    "execv": "os",
    "execvp": "os",
    "spawnv": "os",
}
# IPython's machinery: how outputs, errors and display reach the grader.
_IPYTHON_HOOKS = {
    "get_ipython", "display_pub", "publish_display_data", "displayhook", "excepthook",
    "set_custom_exc", "showtraceback", "_showtraceback", "run_cell", "events",
}  # fmt: skip
_DUNDERS = {
    "__globals__", "__code__", "__builtins__", "__subclasses__", "__closure__", "__dict__",
    "f_globals", "f_locals", "f_back", "gi_frame", "tb_frame", "__loader__", "__spec__",
}  # fmt: skip
_PRIVATE_PATHS = re.compile(
    r"(?:^|[/\\])(?:solutions|source|release|autograded|submitted|feedback)(?:[/\\]|$)"
    r"|gradebook|\.db\b|^/(?!tmp\b)|^~|\.\.[/\\]"
)


@dataclass(frozen=True)
class Finding:
    """One suspicious construct.

    Attributes
    ----------
    cell : int
        Index of the cell in the notebook.
    line : int
        Line in that cell (1-based).
    kind : {"tamper", "forbidden"}
        ``forbidden``: calls a reference implementation the lab forbids (the question's tests
        score 0); ``tamper``: anything else (every later test scores 0).
    message : str
        What was found, for the report.
    """

    cell: int
    line: int
    kind: FindingKind
    message: str


def _python_source(source: str) -> str:
    """Cell source with IPython syntax (``%magic``, ``!cmd``) turned into Python calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # pragma: no cover - IPython is a course dependency
        return source


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``a.b.c`` with ``a`` replaced by the module it is an alias of; None if not a name chain."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    root = aliases.get(node.id)
    if root is None:
        return None
    return ".".join([root, *reversed(parts)])


def _is_forbidden(dotted: str, forbidden: Sequence[str]) -> str | None:
    for entry in forbidden:
        if dotted == entry or dotted.startswith(entry + "."):
            return entry
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(
        self, cell: int, aliases: dict[str, str], protected: set[str], forbidden: Sequence[str]
    ) -> None:
        self.cell, self.aliases, self.protected, self.forbidden = (
            cell,
            aliases,
            protected,
            forbidden,
        )
        self.findings: list[Finding] = []

    def flag(self, node: ast.AST, kind: FindingKind, message: str) -> None:
        self.findings.append(Finding(self.cell, getattr(node, "lineno", 0), kind, message))

    # -- names and imports
    def _bind(self, node: ast.AST, name: str) -> None:
        if name in self.protected:
            self.flag(node, "tamper", f"rebinds `{name}`, which the lab's locked cells define")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            target = alias.name if alias.asname else alias.name.split(".")[0]
            self._check_module(node, alias.name)
            if self.aliases.get(local) != target:  # importing the same module again is harmless
                self._bind(node, local)
            self.aliases[local] = target

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._check_module(node, module)
        for alias in node.names:
            full = f"{module}.{alias.name}" if module else alias.name
            if alias.name == "*":
                hit = [f for f in self.forbidden if f.startswith(module + ".")]
                if hit:
                    self.flag(node, "forbidden", f"imports * from {module}, which holds {hit[0]}")
                continue
            self._check_module(node, full)
            self._use(node, full)
            if alias.name in _IPYTHON_HOOKS:
                self.flag(node, "tamper", f"imports IPython's {alias.name}")
            local = alias.asname or alias.name
            if self.aliases.get(local) != full:
                self._bind(node, local)
            self.aliases[local] = full

    def _check_module(self, node: ast.AST, module: str) -> None:
        top = module.split(".")[0]
        if top in _DYNAMIC_MODULES:
            self.flag(node, "tamper", f"imports {module} ({_DYNAMIC_MODULES[top]})")

    def _use(self, node: ast.AST, dotted: str) -> None:
        entry = _is_forbidden(dotted, self.forbidden)
        if entry:
            self.flag(node, "forbidden", f"uses {entry}, which this lab's answers may not call")

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._bind(node, node.id)
        elif node.id in self.aliases:
            self._use(node, self.aliases[node.id])
        if node.id == "__builtins__":
            self.flag(node, "tamper", "touches __builtins__")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._bind(node, node.name)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._bind(node, node.name)
        self.generic_visit(node)

    # -- attributes
    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node, self.aliases)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            base = _dotted(node.value, self.aliases)
            if base is not None:
                self.flag(node, "tamper", f"patches the module attribute {base}.{node.attr}")
        elif dotted is not None:
            self._use(node, dotted)
            module = dotted.split(".")[0]
            if _DYNAMIC_ATTRIBUTES.get(node.attr) == module:
                self.flag(node, "tamper", f"uses {module}.{node.attr}")
        if node.attr in _DUNDERS:
            self.flag(node, "tamper", f"reaches into {node.attr}")
        if node.attr in _IPYTHON_HOOKS:
            self.flag(node, "tamper", f"reaches into IPython's {node.attr}")
        if dotted is None or not isinstance(node.ctx, ast.Load):
            self.generic_visit(node)
        else:  # the chain is handled; only its base remains
            base: ast.AST = node
            while isinstance(base, ast.Attribute):
                base = base.value
            if not isinstance(base, ast.Name):
                self.visit(base)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in _DYNAMIC_CALLS:
            if node.func.id not in self.aliases:  # a builtin, not the student's own function
                self.flag(
                    node, "tamper", f"calls {node.func.id}() ({_DYNAMIC_CALLS[node.func.id]})"
                )
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _PRIVATE_PATHS.search(node.value.strip()):
            self.flag(node, "tamper", f"names a file outside the submission: {node.value[:60]!r}")


def _bound_names(tree: ast.AST) -> tuple[set[str], dict[str, str]]:
    """Names a trusted cell imports or defines (protected), and its import aliases."""
    names: set[str] = set()
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                names.add(local)
                aliases[local] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    local = alias.asname or alias.name
                    names.add(local)
                    aliases[local] = f"{node.module}.{alias.name}" if node.module else alias.name
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names, aliases


def scan_cells(cells: Sequence[tuple[str, bool]], forbidden: Sequence[str] = ()) -> list[Finding]:
    """Scan a notebook's code cells in order.

    Parameters
    ----------
    cells : sequence of (source, trusted)
        Every code cell's source, and whether it is one of the lab's own locked cells
        (trusted cells are not scanned, but the names they import or define are protected
        and their import aliases are followed).
    forbidden : sequence of str
        Dotted names of reference functions or modules the answers may not use, e.g.
        ``"tinyml_course.profiling.conv2d_macs"``.

    Returns
    -------
    list of Finding

    Examples
    --------
    >>> setup = ("from tinyml_course.checks import check_value", True)
    >>> for finding in scan_cells([setup, ("check_value = print", False)]):
    ...     print(finding.message)
    rebinds `check_value`, which the lab's locked cells define
    """
    aliases: dict[str, str] = {}
    protected: set[str] = set()
    findings: list[Finding] = []
    for index, (source, trusted) in enumerate(cells):
        try:
            tree = ast.parse(_python_source(source))
        except SyntaxError:
            continue  # it fails when it runs; nothing to scan
        if trusted:
            names, found = _bound_names(tree)
            protected |= names
            aliases.update(found)
            continue
        scanner = _Scanner(index, aliases, protected, forbidden)
        scanner.visit(tree)
        findings.extend(scanner.findings)
    return findings
