"""Option defaults have one home, the schema: checking a section fills them in and the readers index the result.

A key the schema documents but no reader reads is a silent lie (``meta_info_file`` of MZSRBicubicPairDataset was
one), so every schema key must be read by its reader, directly or through a helper it calls.
"""
import copy
import inspect
import pytest
import re
from os import path as osp

from basicsr.data import build_dataset
from helpers import write_images
from mzsr_plugin.data.bicubic_pair_dataset import MZSRBicubicPairDataset
from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.data.meta_task_dataset import MZSRMetaTaskDataset, image_paths
from mzsr_plugin.data.random_kernel_pair_dataset import MZSRRandomKernelPairDataset
from mzsr_plugin.models.meta_sr_model import MetaSRModel
from mzsr_plugin.option_schema import (BICUBIC_PAIR_DATASET, KERNEL_TEST_DATASET, META_TASK_DATASET, META_TRAIN,
                                       RANDOM_KERNEL_PAIR_DATASET, SECTIONS, VAL_ADAPT, OptionError, check_dataset,
                                       check_section)

pytestmark = pytest.mark.usefixtures('one_thread')

# Each section: the code that reads it, and the name its filled dict has there (the model reads two sections).
DATASET_OPT = r'\bopt'
READERS = {
    META_TRAIN.title: ((MetaSRModel, ), r"\b(?:train_opt|opt\['train'\])"),
    VAL_ADAPT.title: ((MetaSRModel, ), r'\badapt_opt'),
    META_TASK_DATASET.title: ((MZSRMetaTaskDataset, ), DATASET_OPT),
    KERNEL_TEST_DATASET.title: ((MZSRKernelTestDataset, ), DATASET_OPT),
    BICUBIC_PAIR_DATASET.title: ((MZSRBicubicPairDataset, ), DATASET_OPT),
    RANDOM_KERNEL_PAIR_DATASET.title: ((MZSRRandomKernelPairDataset, MZSRBicubicPairDataset), DATASET_OPT),
}


def subscript_reads(source, receiver):
    """The keys ``source`` reads as ``<receiver>['key']``."""
    return set(re.findall(receiver + r"""\[\s*['"](\w+)['"]\s*\]""", source))


def helper_reads(source):
    """The keys ``source`` leaves to ``image_paths``: its root key argument and what it reads itself."""
    calls = re.findall(r"""\bimage_paths\(opt,\s*['"](\w+)['"]""", source)
    return set(calls) | subscript_reads(inspect.getsource(image_paths), DATASET_OPT) if calls else set()


def test_every_section_has_its_readers():
    assert set(READERS) == {section.title for section in SECTIONS}


@pytest.mark.parametrize('section', SECTIONS, ids=lambda s: s.title)
def test_every_schema_key_is_read_by_its_reader(section):
    readers, receiver = READERS[section.title]
    source = '\n'.join(inspect.getsource(reader) for reader in readers)
    read = subscript_reads(source, receiver) | helper_reads(source)
    unread = [key.name for key in section.keys if key.name not in read]
    assert not unread, f'{section.title}: documented but never read: {unread}'


# Per section: a given key of its own, the required ones and, where the section has them, keys of BasicSR's.
DISK = {'io_backend': {'type': 'disk'}}
FILL_CASES = [
    (META_TRAIN, {'inner_steps': 3, 'total_iter': 10, 'optim_g': {'type': 'Adam', 'lr': 1e-4}}),
    (VAL_ADAPT, {'steps': 2, 'lr': [1e-2, 5e-3]}),
    (META_TASK_DATASET, {'name': 'tasks', 'gt_size': 32, 'batch_size_per_gpu': 4, 'dataroot_gt': 'hr', **DISK}),
    (KERNEL_TEST_DATASET, {'name': 'val', 'kernel_size': 9, 'phase': 'val', **DISK}),
    (BICUBIC_PAIR_DATASET, {'name': 'pairs', 'use_rot': False, 'phase': 'train', 'dataroot_gt': 'hr', 'gt_size': 16,
                            **DISK}),
    (RANDOM_KERNEL_PAIR_DATASET, {'name': 'pairs', 'noise_level': 0.01, 'use_shuffle': True, 'dataroot_gt': 'hr',
                                  'gt_size': 16, **DISK}),
]


def test_fill_cases_cover_every_section():
    assert [section.title for section, _ in FILL_CASES] == [section.title for section in SECTIONS]


@pytest.mark.parametrize('section,given', FILL_CASES, ids=[section.title for section, _ in FILL_CASES])
def test_check_section_fills_in_the_schema_defaults(section, given):
    before = copy.deepcopy(given)
    checked = check_section(section, given)
    assert checked is not given and given == before
    assert set(checked) == set(given) | {key.name for key in section.keys}
    for key in section.keys:
        assert checked[key.name] == given.get(key.name, key.default), key.name
    foreign = set(given) - {key.name for key in section.keys}
    assert bool(foreign) == bool(section.foreign)
    assert all(checked[name] is given[name] for name in foreign)
    assert check_dataset(section, given) == checked
    assert check_section(section, checked) == checked  # a checked section stays valid (models rebuilt from opt)


def test_an_absent_section_is_all_defaults():
    assert check_section(VAL_ADAPT, None) == {key.name: key.default for key in VAL_ADAPT.keys}


@pytest.mark.parametrize('dataset_type', [MZSRBicubicPairDataset, MZSRRandomKernelPairDataset])
def test_pair_datasets_use_only_the_images_of_meta_info_file(tmp_path, dataset_type):
    write_images(str(tmp_path / 'hr'), 3, 32, 32)
    # BasicSR's meta_info format and a plain name: the first field is the image.
    (tmp_path / 'meta_info.txt').write_text('img002.png (32,32,3) 1\nimg000.png\n')
    opt = {'name': 'pairs', 'dataroot_gt': str(tmp_path / 'hr'), 'io_backend': {'type': 'disk'}, 'scale': 2,
           'gt_size': 16, 'meta_info_file': str(tmp_path / 'meta_info.txt')}
    dataset = dataset_type(opt)
    assert [osp.basename(path) for path in dataset.paths] == ['img000.png', 'img002.png']
    assert {osp.basename(dataset[i]['gt_path']) for i in range(len(dataset))} == {'img000.png', 'img002.png'}
    assert len(dataset_type(dict(opt, meta_info_file=None))) == 3


@pytest.mark.parametrize('kernel,kernel_size,size,downsample', [
    ('g_d_2.0', None, 21, 'direct'),  # the official test kernels
    ('g_b_1.3', None, 21, 'bicubic'),  # a spec's own sub-sampling, not downsample's default
    ('random', None, 15, 'direct'),  # the meta-training kernels
    ('g_d_2.0', 11, 11, 'direct'),
    ('random', 11, 11, 'direct'),
])
def test_kernel_size_default_depends_on_the_kernel(tmp_path, kernel, kernel_size, size, downsample):
    write_images(str(tmp_path / 'hr'), 1, 24, 24)
    opt = {'name': 'val', 'dataroot_gt': str(tmp_path / 'hr'), 'io_backend': {'type': 'disk'}, 'scale': 2,
           'kernel': kernel}
    if kernel_size is not None:
        opt['kernel_size'] = kernel_size
    item = MZSRKernelTestDataset(opt)[0]
    assert tuple(item['kernel'].shape) == (size, size) and item['downsample'] == downsample


def test_a_missing_required_key_is_named_before_any_work(tmp_path):
    write_images(str(tmp_path / 'hr'), 1, 32, 32)
    with pytest.raises(OptionError, match=r"dataset 'pairs' \(MZSRBicubicPairDataset\): gt_size is required \(a whole "
                       r'number >= 1: HR patch size'):
        build_dataset({'name': 'pairs', 'type': 'MZSRBicubicPairDataset', 'dataroot_gt': str(tmp_path / 'hr'),
                       'io_backend': {'type': 'disk'}, 'scale': 2, 'phase': 'train'})
    with pytest.raises(OptionError, match=r'dataroot_gt is required .*; io_backend is required'):
        check_section(META_TASK_DATASET, {'scale': 2})
