"""Issue 34: exploring in JupyterLab without surprises. A second Run All in the same kernel takes the edited parameters;
every run notebook works unedited with its kernel in nbs/; a Lab edit left in train.ipynb never reaches an unattended run
(papermill, a sweep); long report steps print progress."""
import json, os, re, shutil, sys
from pathlib import Path
import pytest, yaml
import nbformat
from conftest import ROOT, TINY, notebook_text
from test_lab import run_notebook, kernel_env
from test_bench import SMALL

RUN_NOTEBOOKS = ('train', 'generate', 'compare', 'sweep', 'bench', 'soak', 'results')

@pytest.fixture(scope='module')
def project(tmp_path_factory):
    "A project as a clone leaves it (settings.ini, every run notebook in nbs/, results/), with one tiny run made by train.ipynb from nbs/."
    proj = tmp_path_factory.mktemp('proj')
    (proj/'settings.ini').write_text('[DEFAULT]\nlib_name = climbkit\n'); (proj/'nbs').mkdir(); (proj/'results').mkdir()
    for nb in RUN_NOTEBOOKS: shutil.copy(ROOT/'nbs'/f'{nb}.ipynb', proj/'nbs'/f'{nb}.ipynb')
    out = proj/'tiny-1.ipynb'
    p = run_notebook(proj/'nbs'/'train.ipynb', out, cwd=proj/'nbs', env=kernel_env(),
                     params=[(k, v) for k, v in {**TINY, 'epochs': 1, 'grader': 'none', 'name': 'tiny-1'}.items()])
    assert p.returncode == 0, p.stderr[-3000:]
    return proj

def with_values(source:str, values:dict) -> str:
    "The parameter cell with `values` typed in, as a person edits it in Lab (`name = None  # ...` -> `name = value  # ...`)."
    for k, v in values.items():
        source, n = re.subn(rf'^{k} = None', f'{k} = {v!r}', source, flags=re.M)
        assert n == 1, k
    return source

def parameter_cell(nb): return next(c for c in nb.cells if 'parameters' in c.metadata.get('tags', []))

def run_all(client, nb) -> str|None:
    "Run All, as Lab does: every cell in order in the same kernel, stopping at the first error; that error's name and value."
    from nbclient.exceptions import CellExecutionError
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code': continue
        try: client.execute_cell(cell, i)
        except CellExecutionError:
            err = next(o for o in cell.outputs if o.output_type == 'error')
            return f"{err['ename']}: {err['evalue']}"
    return None

def test_a_second_run_all_in_one_kernel_takes_the_edited_parameters(project, monkeypatch):
    from nbclient import NotebookClient
    monkeypatch.delenv('CLIMBKIT_RUNS', raising=False)
    monkeypatch.setenv('JPY_SESSION_NAME', str(project/'nbs'/'train.ipynb'))  # what JupyterLab's kernels are started with
    nb = nbformat.read(project/'nbs'/'train.ipynb', as_version=4)
    cell, kit = parameter_cell(nb), parameter_cell(nb).source
    client = NotebookClient(nb, timeout=600, resources={'metadata': {'path': str(project/'nbs')}})
    with client.setup_kernel():
        cell.source = with_values(kit, {**TINY, 'epochs': 1, 'grader': 'none', 'name': 'lab-1'})
        assert run_all(client, nb) is None
        cell.source = with_values(kit, {**TINY, 'epochs': 0, 'grader': 'none', 'name': 'lab-bad'})  # edited, Run All again
        err = run_all(client, nb)
        assert err is not None and err.startswith('ClimbkitError') and "'epochs'" in err, err
        assert not (project/'runs'/'lab-bad').exists()
        cell.source = with_values(kit, {**TINY, 'epochs': 2, 'n_routes': 700, 'grader': 'none', 'name': 'lab-2'})
        assert run_all(client, nb) is None
        cell.source = with_values(kit, {**TINY, 'grader': 'none', 'name': 'lab-3'})  # a value taken out again: its default
        assert run_all(client, nb) is None
    first, second, third = (json.loads((project/'runs'/n/'config.json').read_text()) for n in ('lab-1', 'lab-2', 'lab-3'))
    assert (first['epochs'], first['n_routes']) == (1, 600) and (second['epochs'], second['n_routes']) == (2, 700)
    assert third['epochs'] == TINY['epochs'] and third['n_routes'] == 600

def edited_copy(project, tmp_path, line='n_routes = 1000') -> Path:
    "nbs/train.ipynb as Lab autosaves it after a person typed `line` into the parameter cell (kept in the project's nbs/)."
    nb = nbformat.read(project/'nbs'/'train.ipynb', as_version=4)
    name = line.split(' = ')[0]
    parameter_cell(nb).source = re.sub(rf'^{name} = None', line, parameter_cell(nb).source, flags=re.M)
    path = project/'nbs'/f'edited-{tmp_path.name}.ipynb'
    nbformat.write(nb, path)
    return path

def test_an_unattended_run_refuses_a_parameter_cell_edited_in_lab(project, tmp_path):
    path = edited_copy(project, tmp_path)
    out = tmp_path/'out.ipynb'
    p = run_notebook(path, out, cwd=project, env=kernel_env(), params=[(k, v) for k, v in {**TINY, 'grader': 'none', 'name': 'edited'}.items()])
    assert p.returncode != 0
    errors = [o for c in json.loads(out.read_text())['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert len(errors) == 1 and errors[0]['ename'] == 'ClimbkitError', errors
    said = errors[0]['evalue']
    assert 'n_routes = 1000' in said and 'git checkout nbs/train.ipynb' in said and '-p NAME VALUE' in said, said
    assert not (project/'runs'/'edited').exists()  # refused before anything was written

def test_a_sweep_refuses_an_edited_train_notebook_before_any_trial(project, tmp_path, monkeypatch):
    import climbkit.sweep as sweep
    from climbkit.core import ClimbkitError
    monkeypatch.setattr(sweep, 'TRAIN_NOTEBOOK', edited_copy(project, tmp_path, "lr = 'typo'"))
    spec = dict(task='synthetic', fixed={'n_samples': 256}, search={'lr': {'log_uniform': [1e-3, 1e-2]}}, trials=1, workers=1, pruner='none')
    with pytest.raises(ClimbkitError, match=r"line \d+: lr = 'typo'"):
        sweep.run_sweep(spec, out_dir=tmp_path/'runs', name='s')
    assert not (tmp_path/'runs'/'s').exists()
    monkeypatch.setattr(sweep, 'TRAIN_NOTEBOOK', ROOT/'nbs'/'train.ipynb')
    sweep.check_notebook_file(sweep.TRAIN_NOTEBOOK)  # the committed notebook passes

def test_notebook_outputs_never_reach_a_commit():
    "nbs/*.ipynb are cleaned by nbstripout as git stages them (make setup configures the filter .gitattributes names)."
    assert 'nbs/*.ipynb filter=nbstripout' in (ROOT/'.gitattributes').read_text()
    assert 'git-filter' in (ROOT/'Makefile').read_text()
    for path in sorted((ROOT/'nbs').glob('*.ipynb')):  # and the committed notebooks carry none
        nb = json.loads(path.read_text())
        assert not any(c.get('outputs') or c.get('execution_count') for c in nb['cells'] if c['cell_type'] == 'code'), path.name

def run_from_nbs(project, tmp_path, name, params=()):
    out = tmp_path/f'{name}.ipynb'
    p = run_notebook(project/'nbs'/f'{name}.ipynb', out, cwd=project/'nbs', params=list(params), env=kernel_env())
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return notebook_text(out)

def test_compare_runs_unedited_from_nbs(project, tmp_path):
    text = run_from_nbs(project, tmp_path, 'compare')  # runs = 'runs/*', as committed
    assert 'tiny-1' in text and not (project/'nbs'/'runs').exists()

def test_results_bench_soak_and_sweep_work_from_nbs(project, tmp_path):
    # results: run folders and the ledger folder typed as the Makefile types them, from the project root
    text = run_from_nbs(project, tmp_path, 'results', [('result', 'routes'), ('runs', 'runs/tiny-1'), ('labels', 'tiny')])
    assert (project/'results'/'routes.json').exists() and not (project/'nbs'/'results').exists(), text[-2000:]
    # bench and soak: their run folders go to the project's runs/, not nbs/runs
    run_from_nbs(project, tmp_path, 'bench', [*SMALL.items(), ('configs', ''), ('ablate', ''), ('limit_configs', ''), ('scaling_widths', '16'),
                                               ('scaling_checks', ''), ('sharing_seconds', 0), ('name', 'bench-nbs')])
    run_from_nbs(project, tmp_path, 'soak', [('steps', 12), ('n_routes', 300), ('threads', 1), ('name', 'soak-nbs')])
    assert (project/'runs'/'bench-nbs').is_dir() and (project/'runs'/'soak-nbs').is_dir() and not (project/'nbs'/'runs').exists()
    # sweep: a settings file typed from the root is found from nbs/, and the sweep folder is the project's
    (project/'tiny-sweep.yaml').write_text(yaml.safe_dump(dict(task='synthetic', fixed={'n_samples': 256, 'epochs': 1, 'd_in': 16, 'hidden': '16'},
                                                               search={'lr': {'log_uniform': [1e-3, 1e-2]}}, trials=1, workers=1, pruner='none')))
    text = run_from_nbs(project, tmp_path, 'sweep', [('spec', 'tiny-sweep.yaml'), ('name', 'sweep-nbs')])
    assert (project/'runs'/'sweep-nbs'/'sweep.json').exists() and 'trials: 1 complete' in text, text[-2000:]

def test_the_report_shows_progress_in_unattended_runs(project):
    "The final report's long steps (route metrics, the grade-control sweep) print progress lines with a projected time, like training."
    text = (project/'tiny-1.ipynb').read_text()
    for step in ('route metrics, 3 routes a grade', 'grade control, '):
        assert f'{step}' in text and re.search(re.escape(step) + r'[^"]*: \d+%[^"]*about \d+:\d\d left', text), step
    assert re.search(r'grade control, [^"]*: done in \d+:\d\d', text)
