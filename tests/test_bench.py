"Issue 4: the benchmark notebook runs unattended and leaves its comparison, ablation and freezing tables in a bench run folder."
import json, math
from conftest import papermill, notebook_text

# the benchmark's own configurations, shrunk so that the whole notebook runs in seconds
SMALL = dict(steps=12, warmup=2, ablation_steps=8, freeze_steps=6, n_samples=600, d_in=64, mlp_hidden='64,32', n_routes=300,
             d_model=32, n_layers=2, n_heads=2, dim_feedforward=64, ablations='bf16 fused lamb lookahead freeze accum', threads=1)

def test_bench_notebook(tmp_path):
    papermill(tmp_path/'bench.ipynb', {**SMALL, 'out_dir': tmp_path/'runs', 'name': 'b'}, notebook='bench.ipynb')
    run = tmp_path/'runs'/'b'
    res = json.loads((run/'results.json').read_text())
    rows = res['comparison']
    assert {(r['config'], r['loop']) for r in rows} == {(c, l) for c in ('mlp', 'climb16', 'climb64') for l in ('plain', 'climbkit')}
    for r in rows:
        assert r['step_ms'] > 0 and r['items_per_s'] > 0 and math.isfinite(r['valid_loss']) and 0 < r['mfu'] < 1
        assert r['peak_mb'] is None or r['peak_mb'] >= 0
    assert all(r['precision'] == 'fp32' and r['speedup'] == 1 for r in rows if r['loop'] == 'plain')
    assert res['ceiling_gflops']['fp32'] > 0 and res['ceiling_gflops']['bf16'] > 0
    mlp, climb = ({r['label']: r for r in res['ablation'][k]} for k in ('mlp', 'climb64'))
    assert {'default', 'fused Linear+ReLU on', 'fused Linear+ReLU off', 'AdamW (lr 1e-3) instead of LAMB', 'layer freezing on'} <= set(mlp)
    assert mlp['fused Linear+ReLU on']['fused'] and not mlp['fused Linear+ReLU off']['fused']
    assert {'LAMB instead of AdamW', 'LAMB, bf16 optimizer state', 'Lookahead on (k 5, alpha 0.5)'} <= set(climb)
    assert climb['accumulate 4 batches a step']['steps'] == 2 and climb['default']['steps'] == 8  # the same batches
    assert [r['frozen_layers'] for r in res['freezing']['mlp']] == [0, 1, 2] and len(res['freezing']['climb64']) == 2
    assert {p.name for p in (run/'figures').iterdir()} == {'comparison.png', 'ablation-mlp.png', 'ablation-climb64.png'}
    text = notebook_text(tmp_path/'bench.ipynb')
    assert 'vs plain' in text and 'vs default' in text and 'parameters frozen' in text and 'the plain loop' in text
    assert set(res['breakdown']) == {'mlp', 'climb64'} and res['breakdown']['climb64']['kinds']['matrix products'] > 0

def test_bench_bad_parameters(tmp_path):
    p = papermill(tmp_path/'x.ipynb', {**SMALL, 'configs': 'mlp huge', 'out_dir': tmp_path/'runs'}, check=False, notebook='bench.ipynb')
    assert p.returncode != 0 and "unknown configurations ['huge']" in p.stdout + p.stderr
    p = papermill(tmp_path/'y.ipynb', {**SMALL, 'steps': 2, 'out_dir': tmp_path/'runs'}, check=False, notebook='bench.ipynb')
    assert p.returncode != 0 and "'steps' (2) must exceed 'warmup' (2)" in p.stdout + p.stderr
    p = papermill(tmp_path/'z.ipynb', {**SMALL, 'ablations': 'bf16 turbo', 'out_dir': tmp_path/'runs'}, check=False, notebook='bench.ipynb')
    assert p.returncode != 0 and "'ablations' names unknown aids ['turbo']" in p.stdout + p.stderr
    assert not (tmp_path/'runs').exists()  # nothing written

def test_soak_notebook(tmp_path):
    papermill(tmp_path/'soak.ipynb', {'steps': 20, 'n_routes': 300, 'threads': 1, 'checkpoint_every': 3, 'save_every': 1, 'keep_last': 2,
                                      'out_dir': tmp_path/'runs', 'name': 's'}, notebook='soak.ipynb')
    soak = json.loads((tmp_path/'runs'/'s'/'soak.json').read_text())
    assert soak['steps'] >= 20 and len(soak['memory']) == soak['epochs'] and all(r['rss_mb'] > 0 for r in soak['memory'])
    assert sorted(soak['checkpoint_files']) == sorted(['best.pt', 'latest.pt', f"epoch_{soak['epochs'] - 1}.pt", f"epoch_{soak['epochs']}.pt"])
    assert (tmp_path/'runs'/'s'/'figures'/'memory.png').exists() and 'growth: RSS' in notebook_text(tmp_path/'soak.ipynb')
