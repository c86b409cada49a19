"""Issue 6: knowledge-graph link prediction (-p task kg): step-based runs through papermill with the reference model beside them,
step checkpoints, an exact resume after SIGTERM, resuming from a step checkpoint, climbkit-eval on a checkpoint, and bad input."""
import io, os, sys, json, contextlib, subprocess
from pathlib import Path
import pytest
import torch
from conftest import papermill, notebook_text, metrics, stop_with_sigterm, SHARED
from climbkit.core import ClimbkitError
from climbkit.learner import load_checkpoint_file
from climbkit.run import start_run
from climbkit.kg import family_kg, kg_data, evaluate_split, RelationPrior

BIN = Path(sys.executable).parent
# a small family graph and a tiny transformer: every run takes seconds
KG = dict(task='kg', n_families=12, d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, batch_size=64, lr=0.01, warmup_steps=5, threads=1)

def chance_mrr(n:int) -> float:
    "The expected MRR of ranking `n` candidates at random: mean of 1/k over k = 1..n, H(n)/n (0.057 for the 89 people of family(12))."
    return sum(1 / k for k in range(1, n + 1)) / n

def quietly(fn, *a, **kw):
    with contextlib.redirect_stdout(io.StringIO()): return fn(*a, **kw)

def test_step_run_through_papermill_with_the_reference_model(tmp_path):
    kg = {k: v for k, v in KG.items() if k != 'batch_size'}  # given below under the report's name
    papermill(tmp_path/'out.ipynb', {**kg, 'steps': 40, 'eval_every': 10, 'save_every_steps': 20, 'keep_last': 0,
                                     'micro_batch_size': 32, 'grad_accum_steps': 2, 'out_dir': tmp_path/'runs', 'name': 'r'})
    run = tmp_path/'runs'/'r'
    rows = metrics(run)
    assert [int(r['step']) for r in rows] == [10, 20, 30, 40]
    assert sorted(p.name for p in (run/'checkpoints').iterdir()) == ['best.pt', 'latest.pt', 'step_20.pt', 'step_40.pt']
    assert {'kg_ranks.png', 'kg_compare.png', 'loss.png'} <= {p.name for p in (run/'figures').iterdir()}
    res = json.loads((run/'results.json').read_text())
    assert res['monitor'] == 'valid_mrr' and res['steps'] == 40 and res['best_step'] in (10, 20, 30, 40)
    # floors from baselines on the same graph; measured (this seed): valid loss 3.92, test MRR 0.108, Hits@10 0.22, DistMult's
    # test MRR 0.289; untrained (lr 1e-9): 4.49 (log 89), 0.037, 0.06 and DistMult 0.039; the count model's test MRR: 0.122
    data = kg_data(family_kg(KG['n_families']), 64)
    n, prior = data.info['n_entities'], evaluate_split(RelationPrior(data), data, 'test')['mrr']
    assert float(rows[-1]['valid_loss']) < res['baselines']['relation prior'] < res['baselines']['uniform'], (rows[-1], res['baselines'])
    assert res['test_mrr'] > 1.4 * chance_mrr(n), (res['test_mrr'], chance_mrr(n))
    assert res['test_hits@1'] <= res['test_hits@3'] <= res['test_hits@10'] and res['test_hits@10'] > 10 / n  # chance: 10 of n
    assert res['reference']['test_mrr'] > prior + 0.1, (res['reference']['test_mrr'], prior)  # DistMult, trained the same way in reference/
    ref = json.loads((run/'reference'/'config.json').read_text())
    assert (ref['model'], ref['steps'], ref['batch_size'], ref['grad_accum']) == ('distmult', 40, 32, 2)
    cfg = json.loads((run/'config.json').read_text())
    assert (cfg['batch_size'], cfg['grad_accum']) == (32, 2)  # the report's flag names, accepted
    text = notebook_text(tmp_path/'out.ipynb')
    for needle in ('Filtered ranking: each held-out triple', 'transformer', 'distmult', 'time on this machine', 'step 40/40'):
        assert needle in text, needle

def train_cli(out_dir, name, **kw):
    args = {**KG, 'precision': 'fp32', 'dropout': 0, 'baseline': 'none', 'out_dir': out_dir, 'name': name, **kw}
    return [str(BIN/'climbkit-train'), *(a for k, v in args.items() for a in (f'--{k}', str(v)))]

def test_sigterm_mid_run_then_resume_ends_exactly_as_an_uninterrupted_run(tmp_path):
    steps = dict(steps=600, eval_every=100, checkpoint_every=5, save_every_steps=200)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    subprocess.run(train_cli(tmp_path, 'ref', **steps), check=True, capture_output=True, timeout=300, env=env)
    out = stop_with_sigterm(train_cli(tmp_path, 'cut', **steps), tmp_path/'cut', env)
    stopped = load_checkpoint_file(tmp_path/'cut'/'checkpoints'/'latest.pt')['step']
    assert stopped < 600 and f'SIGTERM at step {stopped}' in out
    subprocess.run(train_cli(tmp_path, 'cut', resume=tmp_path/'cut', **steps), check=True, capture_output=True, timeout=300, env=env)
    keys = ('step', 'epoch', 'train_loss', 'valid_loss', 'valid_mrr', 'lr')
    assert [{k: r[k] for k in keys} for r in metrics(tmp_path/'cut')] == [{k: r[k] for k in keys} for r in metrics(tmp_path/'ref')]
    assert {p.name for p in (tmp_path/'cut'/'checkpoints').iterdir()} >= {'step_200.pt', 'step_400.pt', 'step_600.pt'}

def test_resume_from_a_step_checkpoint_and_train_further(tmp_path):
    _, learn = quietly(start_run, **KG, out_dir=tmp_path, name='r', steps=40, eval_every=10, save_every_steps=20, keep_last=0)
    quietly(learn.fit)
    ck = tmp_path/'r'/'checkpoints'/'step_20.pt'
    _, again = quietly(start_run, **KG, out_dir=tmp_path, resume=ck, steps=60)  # eval_every kept from the run
    assert again.step == 20 and [r['step'] for r in again.history] == [10, 20]
    quietly(again.fit)
    assert [r['step'] for r in again.history] == [10, 20, 30, 40, 50, 60]
    assert [int(r['step']) for r in metrics(tmp_path/'r')] == [10, 20, 30, 40, 50, 60]

def test_a_weight_averaged_run_ranks_with_the_average_and_resumes_it_exactly(tmp_path):
    kw = dict(**{**KG, 'precision': 'fp32', 'dropout': 0.0}, baseline='none', out_dir=tmp_path, steps=60, eval_every=20, save_every_steps=20, keep_last=0, ema=0.9)
    _, full = quietly(start_run, **kw, name='full'); quietly(full.fit)
    best = load_checkpoint_file(tmp_path/'full'/'checkpoints'/'best.pt')
    assert best['averager']['updates'] == best['step'] and not torch.equal(best['model']['tok_emb.weight'], best['train_model']['tok_emb.weight'])
    full.model.load_state_dict(best['model'])  # the averaged weights are the ones validated (and the ones the report ranks with)
    row = next(r for r in full.history if r['step'] == best['step'])
    assert abs(evaluate_split(full.model, full.data, 'valid')['mrr'] - row['valid_mrr']) < 1e-6
    _, cut = quietly(start_run, **kw, name='cut'); quietly(cut.fit, steps=40)
    resumed = {k: v for k, v in kw.items() if k != 'ema'}  # `ema` comes from the run
    _, rest = quietly(start_run, **resumed, resume=tmp_path/'cut'/'checkpoints'/'step_20.pt')
    assert rest.averager is not None and rest.averager.updates == 20
    quietly(rest.fit)
    assert [r['valid_mrr'] for r in rest.history] == [r['valid_mrr'] for r in full.history]
    assert torch.equal(load_checkpoint_file(tmp_path/'cut'/'checkpoints'/'latest.pt')['model']['tok_emb.weight'],
                       load_checkpoint_file(tmp_path/'full'/'checkpoints'/'latest.pt')['model']['tok_emb.weight'])

def test_climbkit_eval_on_a_checkpoint(tmp_path):
    _, learn = quietly(start_run, **KG, out_dir=tmp_path, name='r', steps=20, eval_every=10, save_every_steps=10, keep_last=0)
    quietly(learn.fit)
    ck = tmp_path/'r'/'checkpoints'/'step_10.pt'
    p = subprocess.run([str(BIN/'climbkit-eval'), str(ck), '--quick', '--json', str(tmp_path/'q.json')], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    q = json.loads((tmp_path/'q.json').read_text())
    at_10 = float(metrics(tmp_path/'r')[0]['valid_mrr'])  # what the run measured with these weights (an untrained model: 0.058)
    assert q['step'] == 10 and q['quick'] is True and q['valid_mrr'] == pytest.approx(at_10, abs=1e-9) and 'valid_mrr' in p.stdout
    p = subprocess.run([str(BIN/'climbkit-eval'), str(tmp_path/'r'/'checkpoints'/'best.pt')], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and 'test_mrr' in p.stdout and 'Filtered ranking' in p.stdout
    (tmp_path/'junk.pt').write_bytes(b'\x00' * 10)
    for bad, needle in ((tmp_path/'junk.pt', 'cannot be read'), (tmp_path/'none.pt', 'does not exist')):
        p = subprocess.run([str(BIN/'climbkit-eval'), str(bad), '--quick'], capture_output=True, text=True, timeout=300)
        assert p.returncode == 2 and needle in p.stderr and str(bad) in p.stderr

def write_graph(folder:Path, train:str, valid='a\tr\tb\n', test='b\tr\ta\n'):
    folder.mkdir()
    for name, text in (('train.txt', train), ('valid.txt', valid), ('test.txt', test)):
        if text is not None: (folder/name).write_text(text)
    return folder

def test_a_malformed_triples_file_is_named_with_its_line_and_nothing_is_written(tmp_path):
    data = write_graph(tmp_path/'g', 'a\tr\tb\nb\tr\tc\nc\tr\n')
    p = papermill(tmp_path/'bad.ipynb', {**KG, 'data': data, 'out_dir': tmp_path/'runs'}, check=False)
    text = notebook_text(tmp_path/'bad.ipynb')
    assert p.returncode != 0 and f"{data/'train.txt'}, line 3" in text and 'expected 3 tab-separated fields' in text
    assert not (tmp_path/'runs').exists()

@pytest.mark.parametrize('params, needle', [
    ({'data': 'EMPTY_FIELD'}, 'line 2'),
    ({'data': 'NO_VALID'}, 'valid.txt'),
    ({'data': 'MISSING'}, 'does not exist'),
    ({'model': 'transe'}, "'model' must be one of"),
    ({'baseline': 'rescal'}, "'baseline' must be"),
    ({'max_seq_len': 2}, "'max_seq_len' must be at least 3"),
    ({'d_model': 30, 'n_heads': 4}, "divisible by 'n_heads'"),
    ({'micro_batch_size': 8, 'batch_size': 16}, 'mean the same thing'),
    ({'save_every_steps': 100}, "needs a step-based run"),
    ({'steps': -5}, "'steps' must be 0"),
    ({'monitor': 'mrr'}, "'monitor' must be a validation figure"),
    ({'eval_triples': -1}, "'eval_triples'"),
    ({'n3': -0.1}, "'n3' must be 0 (off) or a positive weight"),
    ({'emb_scale': 0}, "'emb_scale' must be a positive factor"),
    ({'head': 'conv'}, "'head' must be 'mask' or 'complex'"),
    ({'head': 'complex', 'd_model': 9, 'n_heads': 3}, "must be even for head 'complex'"),
], ids=['empty-field', 'no-valid-file', 'missing-folder', 'model', 'baseline', 'max_seq_len', 'heads', 'synonym-clash',
        'save_every_steps-without-steps', 'negative-steps', 'monitor', 'eval_triples', 'n3', 'emb_scale', 'head', 'complex-head-odd-width'])
def test_bad_kg_parameters_are_refused_before_anything_is_written(tmp_path, params, needle):
    folders = {'EMPTY_FIELD': lambda: write_graph(tmp_path/'g', 'a\tr\tb\nb\t\tc\n'),
               'NO_VALID': lambda: write_graph(tmp_path/'g', 'a\tr\tb\n', valid=None), 'MISSING': lambda: tmp_path/'nowhere'}
    if params.get('data') in folders: params = {**params, 'data': folders[params['data']]()}
    with pytest.raises(ClimbkitError) as e: quietly(start_run, **{**KG, **params}, out_dir=tmp_path/'runs')
    assert needle in str(e.value), str(e.value)
    assert not (tmp_path/'runs').exists()

@pytest.mark.skipif(not (SHARED/'data'/'kg'/'umls').exists(), reason='needs ../shared/data/kg (the real Nations and UMLS graphs)')
def test_the_real_graphs_load_with_their_published_sizes():
    from climbkit.kg import load_kg
    for name, sizes in (('umls', (135, 46, 5216, 652, 661)), ('nations', (14, 55, 1592, 199, 201))):
        kg = load_kg(SHARED/'data'/'kg'/name)
        assert (kg.n_entities, kg.n_relations, len(kg.train), len(kg.valid), len(kg.test)) == sizes
        assert kg.datasets()['train'].num_rows == sizes[2]

ROOT = Path(__file__).resolve().parents[1]

def test_the_recipe_configs_differ_only_in_their_graph_and_the_references_match_reference_settings():
    from climbkit.core import load_config_file
    from climbkit.kg import REFERENCE_SETTINGS
    from climbkit.run import resolve_run_config
    cfg = {g: load_config_file(ROOT/'nbs'/'configs'/f'kg-{g}.yaml') for g in ('umls', 'nations', 'transformer', 'complex', 'distmult')}
    assert cfg['umls'].pop('data').endswith('kg/umls') and cfg['nations'].pop('data').endswith('kg/nations')
    assert cfg['umls'] == cfg['nations'] == cfg['transformer'] and cfg['transformer']['model'] == 'transformer'
    for m in ('complex', 'distmult'):  # the reference a transformer run trains beside it is the tuned one
        assert cfg[m]['model'] == m and {k: cfg[m][k] for k in REFERENCE_SETTINGS[m]} == REFERENCE_SETTINGS[m]
        same = {k: v for k, v in cfg['transformer'].items() if k not in REFERENCE_SETTINGS[m]}  # the rest: as the transformer trains
        assert {k: v for k, v in cfg[m].items() if k not in REFERENCE_SETTINGS[m]} == {**same, 'model': m, 'baseline': 'none'}
    for g in cfg:  # every setting is one the task accepts
        resolve_run_config({'config': str(ROOT/'nbs'/'configs'/f'kg-{g}.yaml'), 'data': 'builtin'})

def test_results_kg_plans_every_seed_and_ablation_with_a_label_for_each_run():
    p = subprocess.run(['make', '-n', 'results-kg', 'SHARED_DATA=/data', 'VENV=.venv'], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if 'nbs/results.ipynb' in l]
    assert len(lines) == 1
    import shlex
    args = shlex.split(lines[0].split('&&')[0])
    runs, labels = args[args.index('runs') + 1].split(), [l.strip() for l in args[args.index('labels') + 1].strip().removesuffix('|').split('|')]
    assert len(runs) == len(labels) and len(set(runs)) == len(runs)
    for g in ('umls', 'nations'):
        for s in (0, 1, 2):
            for m in ('transformer', 'complex', 'distmult'):
                assert any(r.endswith(f'kg-{g}-{m}-s{s}') or f'/res-kg-{g}-{m}-s{s}-' in r for r in runs), (g, m, s)
        mine = [l for r, l in zip(runs, labels) if f'-kg-{g}-' in r]
        assert mine.count('transformer') == 3 and mine.count('ComplEx') == 3 and mine.count('DistMult') == 3 and 'ablation: recipe' in mine
    # every run is trained from its graph's config with its seed, on one thread
    trains = [l for l in p.stdout.replace('\\\n', ' ').split('&&') if 'nbs/train.ipynb' in l]
    assert len(trains) == len(runs)
    assert all('-p seed' in t and '-p threads 1' in t and '-p config nbs/configs/kg-' in t and '-p data /data/kg/' in t for t in trains)
