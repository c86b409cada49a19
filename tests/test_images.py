"""Issue 8: image classification (-p task images): the report's tiny run through papermill with inherited YAML configs,
validation twice an epoch, top-1/top-5, top-k checkpoints named by a template, unreadable images, subsets, ResNet weights,
and bad input."""
import io, os, sys, json, warnings, contextlib, subprocess
from pathlib import Path
import pytest, torch
from conftest import papermill, notebook_text, metrics, stop_with_sigterm, ROOT
from climbkit.core import ClimbkitError
from climbkit.learner import load_checkpoint_file
from climbkit.run import start_run

BIN = Path(sys.executable).parent

def quietly(fn, *a, **kw):
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return fn(*a, **kw)

def test_the_reports_tiny_run_through_papermill_with_inherited_configs(tmp_path):
    # tiny.yaml extends base.yaml (the report's settings); this file extends tiny.yaml with a small, fast network
    (tmp_path/'fast.yaml').write_text(f"extends: {ROOT/'nbs'/'configs'/'tiny.yaml'}\narch: resnet18\nimage_size: 32\nepochs: 2\n")
    papermill(tmp_path/'out.ipynb', {'config': tmp_path/'fast.yaml', 'out_dir': tmp_path/'runs', 'name': 'tiny', 'threads': 2,
                                     'save_top_k': 2, 'checkpoint_name': '{task}-epoch={epoch:02d}-val/acc1={val_acc1:.4f}'})
    run = tmp_path/'runs'/'tiny'
    cfg = json.loads((run/'config.json').read_text())
    assert (cfg['optimizer'], cfg['lr'], cfg['weight_decay'], cfg['batch_size']) == ('sgd', 0.01, 1e-4, 32)  # from base.yaml
    assert (cfg['classes'], cfg['train_per_class'], cfg['val_per_class'], cfg['val_check_interval']) == (5, 50, 10, 0.5)
    rows = metrics(run)
    assert [float(r['epoch']) for r in rows] == [0.5, 1, 1.5, 2]  # 8 batches an epoch: validated after 4 and 8
    assert all(float(r['valid_acc1']) <= float(r['valid_acc5']) == 1.0 for r in rows)  # top-5 of 5 classes: always 1
    ckpts = [p for p in (run/'checkpoints').iterdir()]
    assert all(p.is_file() for p in ckpts)  # no folder made by the '/' in the name
    top = sorted(p.name for p in ckpts if p.name.startswith('images-'))
    assert len(top) == 2 and all('val_acc1=' in n and n.endswith('.pt') for n in top), top
    res = json.loads((run/'results.json').read_text())
    assert res['top5_trivial'] and res['chance'] == pytest.approx(0.2)
    # measured (seed 0): top-1 0.52 (26 of 50), last validation loss 1.45 against log(5) = 1.61;
    # untrained (lr 1e-9): 0.22 (chance 0.2) and 1.61
    best = max(float(r['valid_acc1']) for r in rows)  # the report evaluates best.pt (monitor: valid_acc1) on the same images
    assert res['acc1'] >= res['chance'] + 0.15 and res['acc1'] == pytest.approx(best), (res['acc1'], best)
    assert float(rows[-1]['valid_loss']) < 0.95 * res['baselines']['uniform'], (rows[-1]['valid_loss'], res['baselines'])
    assert (run/'figures'/'confusion.png').exists()
    assert 'top-5' in notebook_text(tmp_path/'out.ipynb').lower()

def test_unreadable_images_are_named_and_skipped(tmp_path):
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    for c, colour in (('cat', (200, 30, 30)), ('dog', (30, 30, 200))):
        (tmp_path/'pets'/c).mkdir(parents=True)
        for i in range(6):  # a tint and noise: flat images make BatchNorm degenerate
            px = (torch.tensor(colour) * 0.7 + torch.randint(0, 76, (20, 20, 3), generator=g)).to(torch.uint8).numpy()
            Image.fromarray(px).save(tmp_path/'pets'/c/f'{i}.png')
    (tmp_path/'pets'/'cat'/'cut.png').write_bytes((tmp_path/'pets'/'cat'/'0.png').read_bytes()[:50])
    (tmp_path/'pets'/'dog'/'fake.jpg').write_text('not an image')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        with contextlib.redirect_stdout(io.StringIO()):
            _, learn = start_run(task='images', data=tmp_path/'pets', image_size=16, epochs=1, batch_size=4, threads=1, precision='fp32', out_dir=tmp_path/'runs')
            learn.fit()
    said = ' '.join(str(x.message) for x in w)
    assert 'cut.png' in said and 'fake.jpg' in said and learn.history
    (tmp_path/'junk'/'x').mkdir(parents=True); (tmp_path/'junk'/'x'/'a.png').write_text('no')
    (tmp_path/'junk'/'y').mkdir(); (tmp_path/'junk'/'y'/'b.png').write_text('no')
    with pytest.raises(ClimbkitError, match='no readable'): quietly(start_run, task='images', data=tmp_path/'junk', out_dir=tmp_path/'runs2')
    assert not (tmp_path/'runs2').exists()

def test_make_subset_links_and_records_its_classes(tmp_path):
    from PIL import Image
    from climbkit.images import make_subset
    for c in range(4):
        for s, n in (('train', 6), ('val', 3)):
            (tmp_path/'big'/s/f'n{c}').mkdir(parents=True)
            for i in range(n): Image.new('RGB', (8, 8), (60 * c, 0, 0)).save(tmp_path/'big'/s/f'n{c}'/f'{i}.png')
    rec = quietly(make_subset, tmp_path/'big', tmp_path/'tiny', classes=2, train_per_class=4, val_per_class=2, seed=3)
    files = list((tmp_path/'tiny').rglob('*.png'))
    assert len(files) == 12 and all(f.is_symlink() for f in files) and len(rec['classes']) == 2
    assert json.loads((tmp_path/'tiny'/'subset.json').read_text())['classes'] == rec['classes']
    with pytest.raises(ClimbkitError, match='already exists'): quietly(make_subset, tmp_path/'big', tmp_path/'tiny')

def test_resnets_have_the_standard_layout_and_load_weights_with_another_head(tmp_path):
    from climbkit.images import resnet18, resnet50, load_weights
    assert sum(p.numel() for p in resnet50(1000).parameters()) == 25_557_032
    assert sum(p.numel() for p in resnet18(1000).parameters()) == 11_689_512
    assert 'layer1.0.downsample.0.weight' in resnet50().state_dict()
    torch.save(resnet18(1000).state_dict(), tmp_path/'r18.pth')
    m = resnet18(5)
    quietly(load_weights, m, tmp_path/'r18.pth')
    assert m.fc.out_features == 5 and torch.equal(m.conv1.weight, torch.load(tmp_path/'r18.pth')['conv1.weight'])
    torch.save({'nothing': torch.zeros(1)}, tmp_path/'bad.pth')
    with pytest.raises(ClimbkitError): quietly(load_weights, resnet18(5), tmp_path/'bad.pth')

@pytest.mark.parametrize('params, needle', [
    ({'arch': 'resnet34'}, "'arch'"),
    ({'image_size': 8}, "'image_size'"),
    ({'val_check_interval': 0}, "'val_check_interval'"),
    ({'val_check_interval': 1.5}, "'val_check_interval'"),
    ({'save_top_k': -1}, "'save_top_k'"),
    ({'checkpoint_name': '{task}-{acc}'}, 'uses {acc}'),
    ({'checkpoint_name': '{task'}, "'checkpoint_name' is not a valid template"),
    ({'lr_schedule': 'poly'}, "'lr_schedule'"),
    ({'weights': 'no-such.pth'}, "'weights'"),
    ({'data': 'no-such-folder'}, "'data'"),
    ({'config': 'LOOP'}, 'extends itself'),
], ids=['arch', 'image_size', 'val_check-0', 'val_check-1.5', 'save_top_k', 'name-field', 'name-braces', 'schedule', 'weights', 'data', 'config-cycle'])
def test_bad_image_parameters_are_refused_before_anything_is_written(tmp_path, params, needle):
    if params.get('config') == 'LOOP':
        (tmp_path/'a.yaml').write_text('extends: b.yaml\n'); (tmp_path/'b.yaml').write_text('extends: a.yaml\n')
        params = {'config': tmp_path/'a.yaml'}
    with pytest.raises(ClimbkitError) as e: quietly(start_run, **{'task': 'images', **params}, out_dir=tmp_path/'runs')
    assert needle in str(e.value), str(e.value)
    assert not (tmp_path/'runs').exists()

def test_the_builtin_textures_are_learned_well_above_chance_in_a_few_epochs(tmp_path, monkeypatch):
    # the tiny run (5 classes, 50 + 10 images each, SGD lr 0.01, batch 32, seed 0) with a ResNet-18 at 64 pixels: 32 steps
    monkeypatch.setenv('CLIMBKIT_CACHE', str(tmp_path/'cache'))
    _, learn = quietly(start_run, config=ROOT/'nbs'/'configs'/'tiny.yaml', arch='resnet18', image_size=64, epochs=4,
                       val_check_interval=1.0, precision='fp32', channels_last=False, threads=2, out_dir=tmp_path/'runs', name='learn')
    quietly(learn.fit)
    accs = [r['valid_acc1'] for r in learn.history]
    assert max(accs) >= 0.6, accs  # chance is 0.2; measured 0.82 (50 validation images: one is 0.02)
    assert learn.history[-1]['valid_loss'] < 0.8 * learn.baselines['uniform'], learn.history[-1]

def images_cli(out_dir, name, **kw):
    args = {'task': 'images', 'arch': 'resnet18', 'image_size': 16, 'classes': 3, 'train_per_class': 12, 'val_per_class': 3,
            'batch_size': 4, 'epochs': 2, 'val_check_interval': 0.5, 'checkpoint_every': 2, 'precision': 'fp32',
            'threads': 1, 'out_dir': out_dir, 'name': name, **kw}
    return [str(BIN/'climbkit-train'), *(a for k, v in args.items() for a in (f'--{k}', str(v)))]

def test_sigterm_mid_epoch_then_resume_draws_the_same_crops_and_ends_as_an_uninterrupted_run(tmp_path):
    # augmentation draws from the global torch generator: a resumed run must continue its stream, not restart it
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'CLIMBKIT_CACHE': str(tmp_path/'cache')}
    subprocess.run(images_cli(tmp_path, 'ref'), check=True, capture_output=True, timeout=300, env=env)
    out = stop_with_sigterm(images_cli(tmp_path, 'cut'), tmp_path/'cut', env)
    ck = load_checkpoint_file(tmp_path/'cut'/'checkpoints'/'latest.pt')
    assert ck['epoch'] < 2 and 'SIGTERM' in out, 'the run ended before the signal'
    subprocess.run(images_cli(tmp_path, 'cut', resume=tmp_path/'cut'), check=True, capture_output=True, timeout=300, env=env)
    ref, cut = metrics(tmp_path/'ref'), metrics(tmp_path/'cut')
    keys = ['epoch', 'step', 'train_loss', 'valid_loss', 'valid_acc1', 'lr']
    assert len(ref) == 4 and [{k: r[k] for k in keys} for r in cut] == [{k: r[k] for k in keys} for r in ref]
    ref_weights = load_checkpoint_file(tmp_path/'ref'/'checkpoints'/'latest.pt')['model']
    for k, v in load_checkpoint_file(tmp_path/'cut'/'checkpoints'/'latest.pt')['model'].items():
        assert torch.equal(v, ref_weights[k]), k
