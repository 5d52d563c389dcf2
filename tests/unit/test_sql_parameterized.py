"""Every SQL statement in the repository is parameterized: values travel as bind parameters, never in the text.

The SQL text handed to ``execute``/``executemany``/``copy_expert``/``mogrify``/``read_sql`` may be built only
from string literals, psycopg2's ``sql`` composition (which quotes identifiers), ``mogrify`` (psycopg2 binds the
values), and *identifiers*: module constants (ALL_CAPS: fixed by code at import, however they are built), names
built from them (joins, comprehensions, f-strings of identifiers), module functions returning such text,
``int(...)`` casts, and the few parameters that carry a table or column name from code (IDENTIFIER_PARAMETERS).
A value interpolated into the text (``f"... = {customer_id}"``, ``"..." % x``, ``"...".format(x)``,
``"..." + name``) fails this test, naming the file and line. A function that hands its own ``sql`` parameter on
is accepted only with bind parameters beside it (a pass-through helper such as ``_one(settings, sql, params)``).
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from app.config import PROJECT_ROOT

SQL_CALLS = {"execute", "executemany", "copy_expert", "mogrify", "read_sql"}
# parameters that name a table or its columns, passed by code, never by a user (each caller passes a constant)
IDENTIFIER_PARAMETERS = {"table", "columns", "key", "totals"}
SAFE_FUNCTIONS = {"list", "tuple", "sorted", "join", "items", "keys", "values", "decode"}  # identifiers in and out
BOUND = {"mogrify"}  # psycopg2 binds the parameters into the text, quoted
NUMBERS = {"int", "float", "len"}  # whatever goes in, a number comes out


class _Function:
    def __init__(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Module) -> None:
        self.parameters: set[str] = set()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            self.parameters = {a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)}
        self.assigned: dict[str, list[ast.expr]] = {}
        for child in ast.walk(node):
            if isinstance(child, ast.Assign):
                for target in child.targets:
                    for name in _names(target):
                        self.assigned.setdefault(name, []).append(child.value)
            elif isinstance(child, ast.AnnAssign) and child.value is not None:
                for name in _names(child.target):
                    self.assigned.setdefault(name, []).append(child.value)
            elif isinstance(child, ast.For | ast.comprehension):
                self._bind_loop(child.target, child.iter)

    def _bind_loop(self, target: ast.expr, iterable: ast.expr) -> None:
        """A loop name is as safe as what it iterates over; over a literal of tuples, element by element."""
        if isinstance(iterable, ast.Tuple | ast.List) and isinstance(target, ast.Tuple) and all(
                isinstance(e, ast.Tuple) and len(e.elts) == len(target.elts) for e in iterable.elts):
            for element in iterable.elts:
                for name_node, value in zip(target.elts, element.elts, strict=True):  # type: ignore[attr-defined]
                    for name in _names(name_node):
                        self.assigned.setdefault(name, []).append(value)
            return
        for name in _names(target):
            self.assigned.setdefault(name, []).append(iterable)


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for element in target.elts for n in _names(element)]
    return []


def _constant_name(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return bool(name) and name.lstrip("_").isupper()


def _is_sql_composition(node: ast.expr) -> bool:
    """psycopg2.sql.SQL(...).format(...), sql.Identifier(...), ...: quoted by psycopg2."""
    while isinstance(node, ast.Call | ast.Attribute):
        node = node.func if isinstance(node, ast.Call) else node.value
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sql":
            return True
    return False


class Checker:
    def __init__(self, scopes: list[_Function], module: _Function,
                 functions: dict[str, ast.FunctionDef] | None = None, safe_parameters: frozenset[str] = frozenset()
                 ) -> None:
        self.scopes, self.module = scopes, module
        self.module_functions = functions or {}
        self.safe_parameters = safe_parameters  # of a called function: the call passed identifiers for them
        self.visiting: set[str] = set()

    def _returns_sql(self, name: str, call: ast.Call, loop_names: frozenset[str]) -> bool:
        """A module function that builds SQL text (a migration's DDL, a temp table's name): identifiers only, given
        what this call passes (each parameter is safe when its argument is)."""
        if name in self.visiting:
            return True
        function = self.module_functions[name]
        parameters = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
        passed = dict(zip(parameters, call.args, strict=False))
        passed.update({k.arg: k.value for k in call.keywords if k.arg})
        safe = frozenset(p for p, value in passed.items() if self.identifier(value, loop_names))
        inner = Checker([_Function(function)], self.module, self.module_functions, safe)
        inner.visiting = self.visiting | {name}
        returns = [n.value for n in ast.walk(function) if isinstance(n, ast.Return) and n.value is not None]
        return bool(returns) and all(inner.identifier(r) for r in returns)

    def _lookup(self, name: str) -> list[ast.expr] | None:
        for scope in (*self.scopes, self.module):
            if name in scope.assigned:
                return scope.assigned[name]
        return None

    def identifier(self, node: ast.expr, loop_names: frozenset[str] = frozenset()) -> bool:
        """An expression that can only produce identifiers, numbers or SQL keywords, never a caller's value."""
        if isinstance(node, ast.Constant) or _constant_name(node):
            return True
        if isinstance(node, ast.Name):
            if node.id in loop_names:
                return True
            if any(node.id in scope.parameters for scope in self.scopes):
                return node.id in IDENTIFIER_PARAMETERS or node.id in self.safe_parameters
            return self._bound_safely(node.id)
        if isinstance(node, ast.Attribute):
            return self.identifier(node.value, loop_names) and not isinstance(node.value, ast.Constant)
        if isinstance(node, ast.Subscript):
            return self.identifier(node.value, loop_names)
        if isinstance(node, ast.Starred):
            return self.identifier(node.value, loop_names)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            return all(self.identifier(e, loop_names) for e in node.elts)
        if isinstance(node, ast.JoinedStr):
            return all(self.identifier(v.value, loop_names) for v in node.values if isinstance(v, ast.FormattedValue))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            return self.identifier(node.left, loop_names) and self.identifier(node.right, loop_names)
        if isinstance(node, ast.GeneratorExp | ast.ListComp | ast.SetComp):
            names = set(loop_names)
            for generator in node.generators:
                if not self.identifier(generator.iter, frozenset(names)):
                    return False
                names.update(_names(generator.target))
            return self.identifier(node.elt, frozenset(names))
        if isinstance(node, ast.Call):
            function = node.func
            called = function.id if isinstance(function, ast.Name) else function.attr \
                if isinstance(function, ast.Attribute) else ""
            if called in NUMBERS or called in BOUND:
                return True
            if called in self.module_functions and isinstance(function, ast.Name):
                return self._returns_sql(called, node, loop_names)
            if called not in SAFE_FUNCTIONS:
                return _is_sql_composition(node)
            receiver_ok = not isinstance(function, ast.Attribute) or self.identifier(function.value, loop_names)
            return receiver_ok and all(self.identifier(a, loop_names) for a in node.args)
        if isinstance(node, ast.IfExp):
            return self.identifier(node.body, loop_names) and self.identifier(node.orelse, loop_names)
        return False

    def _bound_safely(self, name: str) -> bool:
        if name in self.visiting:
            return True  # a name built from itself (query = prefix + query): as safe as its other bindings
        values = self._lookup(name)
        if not values:
            return False
        self.visiting.add(name)
        try:
            return all(self.identifier(v) for v in values)
        finally:
            self.visiting.discard(name)

    def statement(self, node: ast.expr, has_params: bool) -> bool:
        """The SQL text argument: literals, sql composition and identifiers only."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return True
        if _is_sql_composition(node):
            return True
        if isinstance(node, ast.JoinedStr | ast.BinOp):
            if isinstance(node, ast.BinOp) and not isinstance(node.op, ast.Add):
                return False  # "..." % value
            return self.identifier(node)
        if isinstance(node, ast.Name):
            if any(node.id in scope.parameters for scope in self.scopes):
                return has_params  # a pass-through helper: its callers' values are bound
            if _constant_name(node):
                return True  # a module constant: SQL text fixed by code at import
            if node.id in self.visiting:
                return True
            values = self._lookup(node.id)
            self.visiting.add(node.id)
            try:
                return bool(values) and all(self.statement(v, has_params) for v in values)
            finally:
                self.visiting.discard(node.id)
        if isinstance(node, ast.IfExp):
            return self.statement(node.body, has_params) and self.statement(node.orelse, has_params)
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Attribute) and node.func.attr == "format"):
            return self.identifier(node)  # a function that returns SQL text: judged by what it returns
        return False  # "...".format(value) and anything else


def string_built_sql(source: str, path: str = "<source>") -> list[str]:
    """``path:line: statement`` for each SQL call whose text is not provably free of values."""
    tree = ast.parse(source)
    module = _Function(tree)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    problems: list[str] = []

    def visit(node: ast.AST, scopes: list[_Function]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scopes = [_Function(node), *scopes]
        if isinstance(node, ast.Call) and node.args:
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else \
                function.id if isinstance(function, ast.Name) else ""
            has_params = len(node.args) > 1 or any(k.arg in ("params", "vars") for k in node.keywords)
            if called in SQL_CALLS and not Checker(scopes, module, functions).statement(node.args[0], has_params):
                problems.append(f"{path}:{node.lineno}: {ast.unparse(node.args[0])[:120]}")
        for child in ast.iter_child_nodes(node):
            visit(child, scopes)

    visit(tree, [])
    return problems


def test_no_sql_statement_in_the_repository_is_built_from_values() -> None:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert len(tracked) > 50
    problems = [p for path in tracked for p in string_built_sql((PROJECT_ROOT / path).read_text(), path)]
    assert not problems, "SQL built from values (bind them as parameters):\n" + "\n".join(problems)


def test_the_check_catches_every_way_of_building_sql_from_a_value() -> None:
    built = '''
def lookup(cur, customer_id, name):
    cur.execute(f"SELECT * FROM features WHERE customer_id = {customer_id}")
    cur.execute("SELECT * FROM features WHERE customer_id = %s" % customer_id)
    cur.execute("SELECT * FROM features WHERE name = '{}'".format(name))
    cur.execute("SELECT * FROM features WHERE name = '" + name + "'")
    query = f"DELETE FROM features WHERE name = '{name}'"
    cur.execute(query)
    cur.execute(f"SET LOCAL statement_timeout = {str(name)}")
'''
    assert [line.split(":")[1] for line in string_built_sql(built)] == ["3", "4", "5", "6", "8", "9"]


def test_the_check_accepts_bound_values_and_identifiers_from_code() -> None:
    fine = '''
from psycopg2 import sql
COLUMNS = ("a", "b")
def _temp(table):
    return f"incoming_{table}"
def insert(cur, table, values, query_sql):
    for name, other in (("features", 1), ("merchant_features", 2)):
        cur.execute(f"SELECT count(*) FROM {name} WHERE x = %s", (other,))
    cur.execute(f"COPY {_temp(table)} FROM STDIN")
    cur.execute("SELECT * FROM t WHERE id = %s", (values,))
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    cur.execute(f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({placeholders})", values)
    cur.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(values)))
    cur.execute(query_sql, values)
    cur.execute(f"SET LOCAL statement_timeout = {int(values)}")
'''
    assert string_built_sql(fine) == []


def test_it_reads_the_files_it_claims() -> None:
    assert Path(PROJECT_ROOT / "streaming" / "store_writer.py").exists()
