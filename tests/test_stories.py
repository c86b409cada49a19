"""Issue 7: the cycle-consistent story parser/generator (-p task stories): the report's small run through papermill with its
three loss curves and component-wise parse accuracy, the generate notebook and panel, TinyStories-format files, an exact
resume after SIGTERM (loss parts included), and bad input."""
import io, os, sys, json, contextlib, subprocess
from pathlib import Path
import pytest
from conftest import papermill, notebook_text, metrics, stop_with_sigterm
from climbkit.core import ClimbkitError
from climbkit.learner import load_checkpoint_file
from climbkit.run import start_run

BIN = Path(sys.executable).parent
SMALL = dict(task='stories', num_stories=100, epochs=5, batch_size=8, hidden_dim=32, num_rules=4, threads=1)  # the report's run

def quietly(fn, *a, **kw):
    with contextlib.redirect_stdout(io.StringIO()): return fn(*a, **kw)

@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
    "The report's small run, through papermill: (rendered notebook, run folder)."
    d = tmp_path_factory.mktemp('stories')
    papermill(d/'out.ipynb', {**SMALL, 'out_dir': d/'runs', 'name': 'small'})
    return d/'out.ipynb', d/'runs'/'small'

def test_the_reports_small_run_logs_three_losses_and_a_parse_accuracy_that_means_something(small_run):
    nb, run = small_run
    rows = metrics(run)
    assert len(rows) == 5
    for part in ('parse', 'gen', 'cycle'):
        for split in ('train', 'valid'):
            vals = [float(r[f'{split}_{part}_loss']) for r in rows]
            assert all(0 < v < 20 for v in vals), (split, part, vals)  # normalised per slot / token: nats, not 10^5
    assert float(rows[-1]['train_parse_loss']) < float(rows[0]['train_parse_loss'])
    res = json.loads((run/'results.json').read_text())
    assert len(res['history']) == 5 and 'valid_parse_acc' in res['history'][0]  # per epoch, as training_results.json was
    # measured (seed 0): parse accuracy 0.61 against the majority slots' 0.40, exact match 1 of 49 sentences (seeds 1, 2: 3 of 55,
    # 1 of 46), perplexity 7.2 against the unigram model's 50.6; untrained (lr 1e-9): 0.09, 0 and 116
    figs = {k: v for k, v in res.items() if k.startswith(('parse_acc', 'majority_acc', 'exact', 'perplexity', 'unigram'))}
    assert res['parse_acc'] > res['majority_acc'] + 0.1 and res['perplexity'] < res['unigram_perplexity'] / 3, figs
    # a sentence matches exactly only when all five slots do: above zero, never above the weakest slot (agent: 0.04)
    assert 0 < res['exact_match'] <= min(res[f'parse_acc_{s}'] for s in ('frame', 'agent', 'object', 'place', 'value')), figs
    assert {'loss.png', 'stories_parse.png'} <= {p.name for p in (run/'figures').iterdir()}
    text = notebook_text(nb)
    for needle in ('majority', 'exact', 'chrF', 'parse'):
        assert needle.lower() in text.lower(), needle

def test_generate_notebook_writes_from_a_structure(small_run, tmp_path):
    _, run = small_run
    out = tmp_path/'gen.ipynb'
    papermill(out, {'task': 'stories', 'run': run, 'structure': 'frame=goes_to agent=lily place=park', 'n': 3}, notebook='generate.ipynb')
    text = notebook_text(out)
    assert 'story model' in text and text.count("{'frame': 'goes_to', 'agent': 'lily', 'place': 'park'}") >= 3  # each sentence beside what was asked
    p = papermill(tmp_path/'bad.ipynb', {'task': 'stories', 'run': run, 'structure': 'frame=flies agent=lily'}, notebook='generate.ipynb', check=False)
    assert p.returncode != 0 and 'flies' in notebook_text(tmp_path/'bad.ipynb')

def test_story_panel_without_a_browser(small_run):
    from climbkit.story_task import load_story_run, StoryPanel
    _, run = small_run
    task, model, data, cfg = load_story_run(run)
    panel = StoryPanel(model, data, n=2, seed=1).set(frame='finds', agent='tom', object='ball')
    panel.button.click()
    out = panel.generate()
    assert len(out) == 2 and all(s['text'] for s in out)
    with pytest.raises(ClimbkitError): panel.set(frame='flies')

def test_tinystories_format_files_train(tmp_path):
    from climbkit.stories import story_corpus
    stories = [' '.join(t for t, _ in st) for st in story_corpus(40, 12, seed=5)]
    (tmp_path/'stories.jsonl').write_text('\n'.join(json.dumps({'text': s}) for s in stories) + '\n')
    (tmp_path/'stories.txt').write_text('\n<|endoftext|>\n'.join(stories))
    for name in ('stories.jsonl', 'stories.txt'):
        _, learn = quietly(start_run, task='stories', data=tmp_path/name, num_stories=30, hidden_dim=16, num_rules=4, epochs=1,
                           threads=1, out_dir=tmp_path/'runs', name=name.replace('.', '-'))
        quietly(learn.fit)
        assert learn.history and 'valid_parse_acc' in learn.history[-1]

def train_cli(out_dir, name, **kw):
    args = {**SMALL, 'num_stories': 60, 'epochs': 3, 'precision': 'fp32', 'out_dir': out_dir, 'name': name, **kw}
    return [str(BIN/'climbkit-train'), *(a for k, v in args.items() for a in (f'--{k}', str(v)))]

def test_sigterm_mid_epoch_then_resume_ends_exactly_as_an_uninterrupted_run(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    subprocess.run(train_cli(tmp_path, 'ref', checkpoint_every=3), check=True, capture_output=True, timeout=300, env=env)
    out = stop_with_sigterm(train_cli(tmp_path, 'cut', checkpoint_every=3), tmp_path/'cut', env)
    ck = load_checkpoint_file(tmp_path/'cut'/'checkpoints'/'latest.pt')
    assert ck['epoch'] < 3 and 'SIGTERM' in out, 'the run ended before the signal'
    subprocess.run(train_cli(tmp_path, 'cut', checkpoint_every=3, resume=tmp_path/'cut'), check=True, capture_output=True, timeout=300, env=env)
    keys = [k for k in metrics(tmp_path/'ref')[0] if 'loss' in k or k in ('epoch', 'step', 'lr', 'valid_parse_acc')]
    assert [{k: r[k] for k in keys} for r in metrics(tmp_path/'cut')] == [{k: r[k] for k in keys} for r in metrics(tmp_path/'ref')]

def test_a_malformed_stories_file_is_named_and_nothing_is_written(tmp_path):
    (tmp_path/'bad.jsonl').write_text('{"text": "Lily went to the park."}\n{"text": \n')
    p = papermill(tmp_path/'bad.ipynb', {'task': 'stories', 'data': tmp_path/'bad.jsonl', 'out_dir': tmp_path/'runs', 'threads': 1}, check=False)
    text = notebook_text(tmp_path/'bad.ipynb')
    assert p.returncode != 0 and 'bad.jsonl' in text and 'line 2' in text
    assert not (tmp_path/'runs').exists()

@pytest.mark.parametrize('params, needle', [
    ({'num_rules': 0}, "'num_rules'"),
    ({'num_rules': 99}, "'num_rules'"),
    ({'hidden_dim': 0}, "'hidden_dim'"),
    ({'num_stories': 0}, "'num_stories'"),
    ({'w_cycle': -1}, "'w_cycle'"),
    ({'gumbel_tau': 0}, "'gumbel_tau'"),
    ({'data': 'MISSING'}, 'does not exist'),
    ({'data': 'EMPTY'}, 'empty'),
    ({'data': 'WRONG_KIND'}, '.csv'),
], ids=['num_rules-0', 'num_rules-99', 'hidden_dim', 'num_stories', 'w_cycle', 'gumbel_tau', 'missing-file', 'empty-file', 'csv-file'])
def test_bad_stories_parameters_are_refused_before_anything_is_written(tmp_path, params, needle):
    files = {'MISSING': lambda: tmp_path/'nowhere.jsonl', 'EMPTY': lambda: (tmp_path/'e.txt').write_text('') and None or tmp_path/'e.txt',
             'WRONG_KIND': lambda: (tmp_path/'s.csv').write_text('text\nhello\n') and None or tmp_path/'s.csv'}
    if params.get('data') in files: params = {**params, 'data': files[params['data']]()}
    with pytest.raises(ClimbkitError) as e: quietly(start_run, **{**SMALL, **params}, out_dir=tmp_path/'runs')
    assert needle in str(e.value), str(e.value)
    assert not (tmp_path/'runs').exists()
