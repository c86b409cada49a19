"""Issue 16: the package's shape. Modules import each other in one direction only (no circle, also through imports
inside functions); the machinery imports no family; no machinery module outgrows about 500 lines, and no function
in the package 40."""
import ast
from pathlib import Path
import pytest
from conftest import ROOT
from climbkit.task import MACHINERY

PKG = ROOT/'climbkit'
MODULES = {p.stem: p for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx')}

def imports_of(path:Path) -> set[str]:
    "The climbkit modules `path` imports, at the top or inside a function."
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: found.add(node.module.split('.')[0])
            elif node.module and node.module.startswith('climbkit.'): found.add(node.module.split('.')[1])
            elif node.module == 'climbkit': found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split('.')[1] for a in node.names if a.name.startswith('climbkit.'))
    return found & set(MODULES)

GRAPH = {m: imports_of(p) - {m} for m, p in MODULES.items()}

def test_no_import_circle():
    def below(m, seen=()):
        for d in GRAPH[m]:
            assert d not in seen and d != m, f"import circle: {' -> '.join((*seen, m, d))}"
            below(d, (*seen, m))
    for m in GRAPH: below(m)

def test_the_machinery_imports_no_family():
    assert set(MODULES) >= MACHINERY - {'_modidx'}, 'MACHINERY names a module that does not exist'
    for m in MACHINERY & set(MODULES):
        families = GRAPH[m] - MACHINERY
        assert not families, f'climbkit/{m}.py imports the families {sorted(families)}'

@pytest.mark.parametrize('order', [['climb', 'aurora', 'climb_data', 'climb_grader', 'climb_eval', 'climb_task', 'climb_panel'],
                                   ['stories', 'story_model', 'story_task']], ids=['climb', 'stories'])
def test_each_family_points_down(order):
    for i, m in enumerate(order):
        up = GRAPH[m] & set(order[i + 1:])
        assert not up, f'climbkit/{m}.py imports {sorted(up)}, which come after it'

def test_modules_and_functions_stay_small():
    "No machinery module outgrows about 500 lines; no function anywhere in the package 40."
    for m, path in MODULES.items():
        text = path.read_text()
        if m in MACHINERY: assert len(text.splitlines()) <= 520, f'climbkit/{m}.py has {len(text.splitlines())} lines; split it'
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= 40, f'climbkit/{m}.py: {node.name} is {n} lines; split it'

def test_train_ipynb_is_generic():
    "train.ipynb's code names no task, its parameter cell holds every kit parameter, and its task-parameter names are current."
    import json
    from climbkit.task import TRAIN_DEFAULTS, known_tasks
    from climbkit.run import sync_parameter_cell, PARAMETER_BLOCK
    nb = json.loads((ROOT/'nbs'/'train.ipynb').read_text())
    code = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
    params = next(s for c, s in zip([c for c in nb['cells'] if c['cell_type'] == 'code'], code) if 'parameters' in c['metadata'].get('tags', []))
    kit_part = params.split(PARAMETER_BLOCK)[0]
    assert {line.split('=')[0].strip() for line in kit_part.splitlines() if '=' in line and not line.startswith('#')} == set(TRAIN_DEFAULTS)
    assert sync_parameter_cell(ROOT/'nbs'/'train.ipynb', check=True), 'the task-parameter names are stale: run make params'
    for name in known_tasks():
        assert not any(f"'{name}'" in s or f'"{name}"' in s for s in code if s is not params), f'train.ipynb names task {name!r}'
