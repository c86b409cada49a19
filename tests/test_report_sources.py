"""Issue 33: every report path works on every route source (the built-in data, a MoonBoard JSON file, a Kilter/Tension
database), with and without a grade predictor for its board, at the default settings: the train notebook's final report,
generate.ipynb and the panel, run as users run them (papermill, the panel's button), with a tiny model and few samples."""
import json
import pytest
from conftest import TINY, papermill, notebook_text
from climbkit.run import start_run
from climbkit.climb import generate_routes
from climbkit.climb_eval import NO_GRADE_MEASURE, load_generator
from climbkit.climb_panel import GenerationPanel

SOURCES = ('builtin', 'moonboard', 'kilter')
GRADERS = ('no grader', 'grader')
FULL = ['guidance 1']  # plain sampling from the whole distribution, beside the nucleus the rest draw from
PLAIN = [f'guidance {w}, top-p 0.8' for w in ('0', '1', '1.5', '2', '3')]  # the report's default sweep, at the default top_p
SELF = ['guidance 1, top-p 0.8, best of 8 (self)']  # the default decoding's row, reused from the route metrics

def route_source(kind:str, d):
    "The `data` parameter of a source: 'builtin', a moonboard.com-format JSON file, or a Kilter-like sqlite database."
    if kind == 'builtin': return 'builtin'
    if kind == 'moonboard':  # the built-in generator's routes, written as moonboard.com problems
        move = lambda r, h: {'Description': h, 'IsStart': h in r.start, 'IsEnd': h in r.finish}
        (d/'problems.json').write_text(json.dumps([{'Grade': r.grade, 'Moves': [move(r, h) for h in r.holds]} for r in generate_routes(800)]))
        return str(d/'problems.json')
    from climbkit.aurora import make_aurora_test_db
    return str(make_aurora_test_db(d/'kilter.sqlite', n_climbs=400))

def best_of(kind, where) -> int:
    "The run's configured `best_of`: the default (8, self-reranked), but 2 for the board file without a grader."
    return 2 if (kind, where) == ('moonboard', 'no grader') else 8

@pytest.fixture(scope='module', params=SOURCES)
def source(request, tmp_path_factory):
    """A source's generator, trained through the train notebook at the report's defaults twice: alone in `no grader/`
    (no grade predictor for its board), and in `grader/` beside a grade predictor trained on the same source."""
    kind, d = request.param, tmp_path_factory.mktemp(request.param)
    data = route_source(kind, d)
    _, g = start_run(task='climb_grade', data=data, n_routes=TINY['n_routes'], epochs=2, hidden=32, threads=1, out_dir=d/'grader', name='judge')
    g.fit()
    for where in GRADERS:
        papermill(d/f'{where}.ipynb', {**TINY, 'data': data, 'out_dir': d/where, 'name': 'gen', 'best_of': best_of(kind, where)})
    return kind, d

@pytest.mark.parametrize('where', GRADERS)
def test_train_report_at_its_defaults(source, where):
    kind, d = source
    run, text = d/where/'gen', notebook_text(d/f'{where}.ipynb')
    res = json.loads((run/'results.json').read_text())
    rows, gc = res['route_metrics'], res['grade_control']
    assert rows['constrained']['validity'] == 1 and rows['constrained']['ms_per_route'] > 0
    assert list(gc) == FULL + PLAIN + (['guidance 1, top-p 0.8, best of 4 (grader)'] if where == 'grader' else []) + SELF
    assert all(m['ms_per_route'] > 0 for m in gc.values()) and gc[SELF[-1]]['ms_per_route'] > gc[PLAIN[1]]['ms_per_route']
    assert gc[SELF[0]]['rerank'] == 'self' and gc[SELF[0]]['best_of'] == 8 and gc[PLAIN[3]]['rerank'] is None
    assert gc['guidance 1']['top_p'] == 1 and all(gc[k]['top_p'] == 0.8 for k in PLAIN + SELF)
    assert (run/'figures'/'grade_control.png').exists() and (run/'figures'/'distribution.png').exists()
    assert set(res['samples']) >= {'6C', '7B'} and 'Grade control' in text and 'ms/route' in text
    k = best_of(kind, where)  # the route metrics at the run's own decoding: best of 2 needs no grader
    assert f"guidance 1, top-p 0.8{f', best of {k} (self)' if k > 1 else ''}; reach limit" in text
    if where == 'grader':
        assert res['grader'] == str(d/'grader'/'judge') and all('grade_exact' in m for m in gc.values())
        assert 'built-in' not in text or kind == 'builtin'
    else:
        assert res['grader'] is None and 'train one: -p task climb_grade' in text and 'best of 4 by the grader: left out' in text
        assert not any('grade_exact' in m for m in gc.values())
    truth = kind == 'builtin'  # the true grade measures grade accuracy on the built-in data, with or without a grader
    assert all(('rule_grade_exact' in m) == truth for m in [rows['constrained'], *gc.values()])
    assert (NO_GRADE_MEASURE in text) == (where == 'no grader' and not truth)
    if kind == 'kilter':  # the database's board: its placements and foot holds
        gen = load_generator(run)
        assert gen.board.feet and gen.board.name.startswith('Kilter') and len(gen.tokenizer) > 49
        assert all(not gen.board.problems(r) and all(h.startswith('p') for h in r.holds) for r in gen.sample('6A', 6, seed=0))

@pytest.mark.parametrize('where', GRADERS)
def test_generate_notebook_at_its_defaults(source, where, tmp_path):
    kind, d = source
    out = tmp_path/'generate.ipynb'
    papermill(out, {'run': d/where/'gen', 'n': 4, 'metric_samples': 3}, notebook='generate.ipynb')
    text = notebook_text(out)
    k = best_of(kind, where)
    assert f"decoding: guidance 1, top-p 0.8, best of {k}{' (rerank self)' if k > 1 else ''} (the run's own)" in text  # the run's configured decoding
    assert 'constrained' in text and 'unconstrained' in text and all(s in text for s in FULL + PLAIN[1:] + SELF)
    assert (f"grader: {d/'grader'/'judge'}" in text) == (where == 'grader') and ('best of 4 (grader)' in text) == (where == 'grader')
    assert ('true grade = grade asked' in text) == (kind == 'builtin')
    assert (NO_GRADE_MEASURE in text) == (where == 'no grader' and kind != 'builtin')
    nb = json.loads(out.read_text())
    assert sum('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', [])) >= 3

@pytest.mark.parametrize('where', GRADERS)
def test_panel_at_its_defaults(source, where):
    kind, d = source
    panel = GenerationPanel(d/where, run=d/where/'gen')
    assert (panel.best_of.value, panel.rerank.value, panel.guidance.value, panel.top_p.value) == (best_of(kind, where), 'self', 1, 0.8)  # the run's own decoding
    grade = panel.grade.value
    panel.n.value = 3; panel.button.click()
    assert len(panel.routes) == 3 and all(r.grade == grade for r in panel.routes)
    assert ('no grader for this board' in panel.status.value) == (where == 'no grader')
    panel.best_of.value = 4; panel.button.click()  # self-reranking: no grader needed
    assert len(panel.routes) == 3 and "best of 4, chosen by the generator's own grade posterior" in panel.status.value
    panel.rerank.value = 'grader'; panel.button.click()
    assert len(panel.routes) == 3
    assert ('chosen by that grader' if where == 'grader' else "best of is off: rerank 'grader' needs a grader") in panel.status.value
