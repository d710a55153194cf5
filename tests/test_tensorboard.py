"""What meta-training writes to TensorBoard: per-step query losses, PSNR after each adaptation step, task images."""
import glob
from os import path as osp

from helpers import write_images, write_options
from test_fault_tolerance import meta_train_options, run_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def test_meta_training_logs_losses_adaptation_curves_and_task_images(tmp_path):
    val_hr = str(tmp_path / 'val_hr')
    write_images(val_hr, 2, 24, 20, seed=4)
    val = {
        'dataset': {'name': 'held_out', 'type': 'MZSRKernelTestDataset', 'dataroot_gt': val_hr,
                    'io_backend': {'type': 'disk'}, 'kernel': 'random', 'kernel_seed': 1, 'kernel_size': 7},
        'val_freq': 2, 'save_img': False,
        'adapt': {'steps': 2, 'lr': 'direct_x2'},
        'metrics': {'psnr': {'type': 'calculate_mzsr_psnr', 'crop_border': 2}},
    }
    opt_file = write_options(tmp_path / 'meta_tb.yml',
                             meta_train_options(str(tmp_path / 'data'), 'meta_tb', 4, save_freq=4, val=val))
    result = run_train(tmp_path, opt_file)
    assert result.returncode == 0, result.stderr[-3000:]

    events = glob.glob(str(tmp_path / 'tb_logger' / 'meta_tb' / 'events.out.tfevents.*'))
    assert len(events) == 1, events
    acc = EventAccumulator(events[0], size_guidance={'scalars': 0, 'images': 0})
    acc.Reload()
    scalars, images = set(acc.Tags()['scalars']), set(acc.Tags()['images'])
    expected = {'losses/l_meta', 'losses/l_query_pre', 'losses/l_query_1', 'losses/l_query_2', 'losses/l_support_0',
                'losses/l_support_1', 'grad_norm', 'metrics/held_out/psnr', 'adapt_psnr/held_out/step_0',
                'adapt_psnr/held_out/step_1', 'adapt_psnr/held_out/step_2'}
    assert expected <= scalars, sorted(scalars)
    assert 'adapt_psnr/held_out/step_3' not in scalars
    assert {'meta_query/lq', 'meta_query/output', 'meta_query/gt'} <= images, sorted(images)
    # One loss point per iteration (print_freq 1); validation at iterations 2 and 4, and once more at the end
    # (which BasicSR logs at the loop counter it stopped at, past total_iter).
    assert [e.step for e in acc.Scalars('losses/l_query_2')] == [1, 2, 3, 4]
    curve_steps = [e.step for e in acc.Scalars('adapt_psnr/held_out/step_2')]
    assert curve_steps[:2] == [2, 4] and len(curve_steps) == 3
    assert all(10 < e.value < 60 for e in acc.Scalars('adapt_psnr/held_out/step_0'))
    gt = acc.Images('meta_query/gt')[0]
    assert (gt.width, gt.height) == (2 * 16, 16)  # the 2 query patches (16x16) of the first task, side by side
    assert osp.isfile(tmp_path / 'experiments' / 'meta_tb' / 'models' / 'net_g_4.pth')
