"Issue 4 and 15: the benchmark notebook runs unattended, compares climbkit with the plain loop in fp32 and bf16 over interleaved repeats, and writes its tables to a run folder and, if asked, to the ledger."
import json, math
from pathlib import Path
import pytest
from climbkit.core import ClimbkitError
import yaml
from conftest import papermill, notebook_text
from climbkit.ledger import load_result, kind_name
from climbkit.cpu import choose_precision
from climbkit.sharing import SCENARIOS, sharing_ledger_name

# the benchmark's own configurations, shrunk so that the whole notebook runs in seconds
SMALL = dict(steps=12, warmup=2, ablation_steps=8, ablation_repeats=2, freeze_steps=6, n_samples=600, d_in=64, mlp_hidden='64,32', n_routes=300,
             d_model=32, n_layers=2, n_heads=2, dim_feedforward=64, ablations='bf16 fused dropout pack bf16weights lamb lookahead freeze accum', threads=1, ceiling_sizes='128,256',
             limit_configs='climb64 kg images images_nchw', limit_steps=3, limit_repeats=2, image_arch='resnet18', image_size=32,
             scaling_widths='16 32', scaling_batches='4', scaling_steps=3, scaling_checks='32x4', sharing_seconds=1, sharing_repeats=1)
KG_TINY = dict(task='kg', model='transformer', d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, rel_attention_bias=True, max_seq_len=16, n_families=10)

def small(tmp_path, **changes) -> dict:
    "SMALL, with a tiny knowledge-graph configuration written for it."
    (tmp_path/'kg-tiny.yaml').write_text(yaml.safe_dump(KG_TINY))
    return {**SMALL, 'kg_config': tmp_path/'kg-tiny.yaml', **changes}
LOOPS = ('climbkit', 'plain bf16', 'plain fp32')

def test_bench_notebook(tmp_path):
    papermill(tmp_path/'bench.ipynb', {**small(tmp_path), 'repeats': 2, 'out_dir': tmp_path/'runs', 'name': 'b', 'ledger': tmp_path/'results',
                                       'ledger_command': 'make results-bench'}, notebook='bench.ipynb')
    run = tmp_path/'runs'/'b'
    res = json.loads((run/'results.json').read_text())
    rows = res['comparison']
    assert [(r['config'], r['loop']) for r in rows] == [(c, l) for c in ('mlp', 'climb16', 'climb64') for l in LOOPS]
    native = choose_precision('auto')[0] == 'bf16'
    for r in rows:
        assert r['step_ms'] > 0 and r['items_min'] <= r['items_per_s'] <= r['items_max'] and 0 < r['mfu'] < 1
        assert r['repeats'] == 2 and (r['peak_mb'] is None or r['peak_mb'] >= 0)
        emulated = r['loop'] == 'plain bf16' and not native  # timed over a few steps only: no loss to compare
        assert r['valid_loss'] is None if emulated else math.isfinite(r['valid_loss'])
    by = {(r['config'], r['loop']): r for r in rows}
    assert all(by[(c, 'plain fp32')]['precision'] == 'fp32' and by[(c, 'plain bf16')]['precision'] == 'bf16' for c in ('mlp', 'climb64'))
    assert all(by[(c, l)]['vs ' + l] == 1 for c in ('mlp', 'climb16') for l in ('plain bf16', 'plain fp32'))
    # every repeat is kept, and the ratio is the median of the per-repeat ratios
    reps = [r for r in res['runs'] if r['config'] == 'climb16']
    assert len(reps) == 6 and sorted({r['repeat'] for r in reps}) == [0, 1]
    ours, base = ([r['items_per_s'] for r in reps if r['loop'] == l] for l in ('climbkit', 'plain bf16'))
    assert math.isclose(by[('climb16', 'climbkit')]['vs plain bf16'], sum(a / b for a, b in zip(ours, base)) / 2, rel_tol=1e-9)
    # the same work from the same start: the loops' first losses agree (the same weights and the same first batch)
    first = {r['loop']: r['losses'][0] for r in reps if r['repeat'] == 0}
    assert abs(first['climbkit'] - first['plain fp32']) < 0.05 and abs(first['plain bf16'] - first['plain fp32']) < 0.05
    assert res['ceiling_gflops']['fp32'] > 0 and res['ceiling_gflops']['bf16'] > 0
    mlp, climb = ({r['label']: r for r in res['ablation'][k]} for k in ('mlp', 'climb64'))
    assert {'default', 'fused Linear+ReLU on', 'fused Linear+ReLU off', "LAMB (the report's lr 0.01) instead of AdamW", 'layer freezing on'} <= set(mlp)
    assert mlp['fused Linear+ReLU on']['fused'] and not mlp['fused Linear+ReLU off']['fused']
    assert {'LAMB instead of AdamW', 'LAMB, bf16 optimizer state', 'Lookahead on (k 5, alpha 0.5)'} <= set(climb)
    assert climb['accumulate 4 batches a step']['steps'] == 2 and climb['default']['steps'] == 8  # the same batches
    # every row run in each of 2 interleaved rounds: medians, and the speed against the default of the same round
    assert all(r['repeats'] == 2 and len(r['runs']) == 2 and r['relative_range'][0] <= r['relative'] <= r['relative_range'][1] for r in climb.values())
    assert climb['default']['relative'] == 1 and climb['default']['relative_range'] == [1, 1]
    assert [r['frozen_layers'] for r in res['freezing']['mlp']] == [0, 1, 2] and len(res['freezing']['climb64']) == 2
    assert {p.name for p in (run/'figures').iterdir()} == {'comparison.png', 'ablation-mlp.png', 'ablation-climb64.png', 'parts.png', 'scaling.png', 'sharing.png'}
    assert climb['dropout off (0.1 by default)']['valid_loss'] > 0 and 0 < climb['default']['floor_share'] and 'floor_share' not in climb['accumulate 4 batches a step']
    # packing changes the speed, not what is learned: the same batches from the same start end at (nearly) the same loss
    assert 'floor_share' not in climb['packing off (a padded row a route)'] and abs(climb['packing off (a padded row a route)']['valid_loss'] - climb['default']['valid_loss']) < 0.02
    assert ('bf16 weights, fp32 master copy' in climb) == native and all(math.isfinite(r['valid_loss']) for r in climb.values())
    # against the limit: each configuration's floor, its repeats, and where its step goes
    lim = res['limit']
    assert list(lim) == ['climb64', 'kg', 'images', 'images_nchw'] and all(v['repeats'] == 2 and len(v['runs']) == 2 for v in lim.values())
    for v in lim.values():
        assert 0 < v['floor_ms'] and v['floor_share_range'][0] <= v['floor_share'] <= v['floor_share_range'][1] and 0 < v['mfu'] < 1
        assert v['parts']['matrix products'] > 0 and set(v['parts']) == {'matrix products', 'casts and copies', 'element-wise', 'optimizer', 'data', 'Python and the rest'}
    assert lim['images_nchw']['label'].endswith('channels-first') and lim['images_nchw']['products'][0]['op'].startswith('convolution')
    assert lim['images']['products'][0]['op'].startswith('convolution') and lim['climb64']['products'][0]['op'] in ('mm', 'addmm', 'bmm')
    assert [(p['d_model'], p['batch_size']) for p in res['scaling']] == [(16, 4), (32, 4)] and all(p['projected_s'] > 0 for p in res['scaling'])
    assert [(c['d_model'], c['batch_size'], c['epochs']) for c in res['scaling_checks']] == [(32, 4, 1)] and res['scaling_checks'][0]['real_s'] > 0
    assert sum("of its floor's speed, target" in v or 'MFU, target' in v or 'images/s, target' in v for v in res['verdicts']) == 3
    text = notebook_text(tmp_path/'bench.ipynb')
    assert 'vs plain bf16' in text and 'vs default' in text and 'parameters frozen' in text and 'plain fp32 loop' in text
    assert set(res['breakdown']) == {'mlp', 'climb64'} and res['breakdown']['climb64']['kinds']['matrix products'] > 0
    # the ledger: the tables README shows, with provenance and every repeat
    led = load_result(kind_name('bench'), tmp_path/'results')
    assert led['command'] == 'make results-bench' and led['machine']['cores'] >= 1 and len(led['commit']) in (40, 7)
    assert set(led['tables']) == {'comparison', 'ablation', 'freezing', 'breakdown'} and len(led['raw']['runs']) == 18
    cmp = led['tables']['comparison']
    assert len(cmp['rows']) == 9 and cmp['columns'][:3] == ['configuration', 'loop', 'ms/step'] and cmp['rows'][1][0] == ''
    assert cmp['rows'][0][4].startswith(f"{by[('mlp', 'climbkit')]['vs plain bf16']:.2f}x (")
    assert (tmp_path/'results'/f"{kind_name('bench')}-comparison.png").stat().st_size > 1000
    lled = load_result(kind_name('limit'), tmp_path/'results')
    assert set(lled['tables']) == {'floor', 'parts', 'scaling', 'checks', 'gap'} and len(lled['tables']['floor']['rows']) == 4
    assert len(lled['raw']['limit']['kg']['runs']) == 2 and (tmp_path/'results'/f"{kind_name('limit')}-parts.png").exists() and (tmp_path/'results'/f"{kind_name('limit')}-scaling.png").exists()
    # sharing the machine: every scenario in its own processes, the targets checked, a ledger file for this kind of CPU
    sh = res['sharing']
    assert [r['scenario'] for r in sh['rows']] == list(SCENARIOS) and len(sh['raw']) == len(SCENARIOS) and len(sh['verdicts']) == 3
    assert all(r['sum'] > 0 and r['threads'] for r in sh['rows']) and sh['rows'][0]['sum_vs_alone'] == 1
    sled = load_result(sharing_ledger_name(), tmp_path/'results')
    assert len(sled['tables']['sharing']['rows']) == len(SCENARIOS) and 'Targets: two runs at once' in sled['tables']['sharing']['caption']
    assert (tmp_path/'results'/f'{sharing_ledger_name()}.png').stat().st_size > 1000 and 'two runs at once: together' in text

def test_bench_runs_only_the_parts_asked_for(tmp_path):
    "configs='' ablate='' limit_configs='' sharing_seconds=0: no comparison, no ablation, no limit, no sharing table; only the scaling study, into limit-<kind>.json (make results-limit's way of leaving parts out)."
    papermill(tmp_path/'s.ipynb', {**SMALL, 'configs': '', 'ablate': '', 'limit_configs': '', 'scaling_widths': '16', 'scaling_checks': '', 'sharing_seconds': 0,
                                   'out_dir': tmp_path/'runs', 'name': 's', 'ledger': tmp_path/'results'}, notebook='bench.ipynb')
    res = json.loads((tmp_path/'runs'/'s'/'results.json').read_text())
    assert res['comparison'] == [] and res['ablation'] == {} and res['limit'] == {} and len(res['scaling']) == 1 and res['scaling_checks'] == []
    assert {p.name for p in (tmp_path/'runs'/'s'/'figures').iterdir()} == {'scaling.png'}
    assert not list((tmp_path/'results').glob('bench*.json')) and set(load_result(kind_name('limit'), tmp_path/'results')['tables']) == {'scaling'}

def bench_checks(**params):
    "Run bench.ipynb's parameter cell, `params` and its checking cell in this process, as papermill runs them first (no kernel, no run folder)."
    cells = [c for c in json.loads((Path(__file__).parents[1]/'nbs'/'bench.ipynb').read_text())['cells'] if c['cell_type'] == 'code']
    source = lambda needle: next(''.join(c['source']) for c in cells if needle in ''.join(c['source']))
    ns = {}
    exec(''.join(next(c for c in cells if 'parameters' in c['metadata'].get('tags', []))['source']), ns)
    ns.update(params)
    exec(source('from climbkit.bench import'), ns)
    ns['new_run_dir'] = lambda *a, **k: None  # the checking cell ends by making the run folder: not here
    exec(source('unknown configurations'), ns)

def test_bench_bad_parameters(tmp_path):
    # one through papermill: the notebook itself refuses and leaves no run folder behind
    p = papermill(tmp_path/'x.ipynb', {**SMALL, 'configs': 'mlp huge', 'out_dir': tmp_path/'runs'}, check=False, notebook='bench.ipynb')
    assert p.returncode != 0 and "unknown configurations ['huge']" in p.stdout + p.stderr
    assert not (tmp_path/'runs').exists()  # nothing written
    # the others through the same cells in this process (a kernel start each would cost ~10 s)
    bench_checks(**SMALL)  # the good settings pass
    for bad, needle in (({'steps': 2}, "'steps' (2) must exceed 'warmup' (2)"),
                        ({'ablations': 'bf16 turbo'}, "'ablations' names unknown aids ['turbo']"),
                        ({'ablation_repeats': 0}, "'ablation_repeats' (0) a whole number of at least 1"),
                        ({'limit_configs': 'climb64 gpt5'}, "'limit_configs' names unknown configurations ['gpt5']"),
                        ({'scaling_checks': '64x4'}, "'scaling_checks' must name points of the scaling grid as WIDTHxBATCH (widths [16, 32], batches [4])")):
        with pytest.raises(ClimbkitError) as e: bench_checks(**{**SMALL, **bad})
        assert needle in str(e.value), (bad, str(e.value))

def test_soak_notebook(tmp_path):
    papermill(tmp_path/'soak.ipynb', {'steps': 20, 'n_routes': 300, 'threads': 1, 'checkpoint_every': 3, 'save_every': 1, 'keep_last': 2,
                                      'out_dir': tmp_path/'runs', 'name': 's'}, notebook='soak.ipynb')
    soak = json.loads((tmp_path/'runs'/'s'/'soak.json').read_text())
    assert soak['steps'] >= 20 and len(soak['memory']) == soak['epochs'] and all(r['rss_mb'] > 0 for r in soak['memory'])
    assert sorted(soak['checkpoint_files']) == sorted(['best.pt', 'latest.pt', f"epoch_{soak['epochs'] - 1}.pt", f"epoch_{soak['epochs']}.pt"])
    assert (tmp_path/'runs'/'s'/'figures'/'memory.png').exists() and 'growth: RSS' in notebook_text(tmp_path/'soak.ipynb')
