"""mmengine where it replaces our own code: the networks in an OpenMMLab registry, buildable from its configs.

Process groups and the all-reduce of meta-gradients (``mmengine.dist``) are covered by
``test_meta_model.py::test_two_processes_give_the_update_of_one_process_over_all_tasks``; parallel data
preparation (``track_parallel_progress``) by ``test_prepare.py`` (``n_thread=2``).
"""
import mmengine
import mmengine.registry
import pytest
import subprocess
import sys
import textwrap
import torch
from mmengine.registry import DefaultScope

import mzsr_plugin.mmengine_registry as registry
from basicsr.utils.registry import ARCH_REGISTRY
from mzsr_plugin.archs.mzsr_arch import MZSRNet


def test_build_from_the_plugin_registry():
    net = registry.MODELS.build(dict(type='MZSRNet', scale=3, num_feat=8, num_conv=3))
    assert type(net) is MZSRNet and net.scale == 3 and len(net.convs) == 3
    # The same class as BasicSR's registry gives, so weights and options are interchangeable.
    assert registry.MODELS.get('MZSRNet') is ARCH_REGISTRY.get('MZSRNet')
    assert net(torch.rand(1, 3, 5, 4)).shape == (1, 3, 15, 12)


def test_build_through_mmengine_root_registry_with_the_scope():
    assert registry.MODELS.scope == 'mzsr' and registry.MODELS.parent is mmengine.registry.MODELS
    net = mmengine.registry.MODELS.build(dict(type='mzsr.MZSRNet'))
    assert type(net) is MZSRNet and net.scale == 2
    assert sum(p.numel() for p in net.parameters()) == 225091  # the official net
    # An OpenMMLab runner sets the default scope: plain 'MZSRNet' then resolves in ours.
    with DefaultScope.overwrite_default_scope('mzsr'):
        assert type(mmengine.registry.MODELS.build(dict(type='MZSRNet', num_feat=8))) is MZSRNet
    with pytest.raises(KeyError, match='MZSRNet is not in the mmengine::model registry'):
        mmengine.registry.MODELS.build(dict(type='MZSRNet'))


def test_build_from_a_config_string():
    cfg = mmengine.Config.fromstring(
        textwrap.dedent("""
        scale = 4
        model = dict(type='mzsr.MZSRNet', num_feat=16, num_conv=4, scale=scale)
        """), '.py')
    net = mmengine.registry.MODELS.build(cfg.model)
    assert net.scale == 4 and net.convs[0].out_channels == 16
    # Wrong arguments are reported by mmengine with the class named.
    with pytest.raises(TypeError, match='MZSRNet.*unexpected keyword argument'):
        registry.MODELS.build(dict(type='MZSRNet', upscale=2))
    with pytest.raises(ValueError, match='MZSRNet: num_conv must be at least 2, got 1'):
        registry.MODELS.build(dict(type='MZSRNet', num_conv=1))


def test_config_file_with_custom_imports_builds_in_a_fresh_process(tmp_path):
    config = tmp_path / 'mzsr_cfg.py'
    config.write_text(
        textwrap.dedent("""
        custom_imports = dict(imports=['mzsr_plugin.mmengine_registry'], allow_failed_imports=False)
        model = dict(type='mzsr.MZSRNet', num_feat=8, num_conv=3, scale=2)
        """))
    code = ('import mmengine, mmengine.registry, sys; cfg = mmengine.Config.fromfile(sys.argv[1]); '
            'net = mmengine.registry.MODELS.build(cfg.model); print(type(net).__module__, type(net).__name__, '
            'net.scale)')
    result = subprocess.run([sys.executable, '-c', code, str(config)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ['mzsr_plugin.archs.mzsr_arch', 'MZSRNet', '2']
