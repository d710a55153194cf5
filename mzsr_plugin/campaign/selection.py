"""The campaign's fixed held-out selection set and its score.

HQ70 images (never trained on) cropped at their centre, each degraded the official way (correlate, sub-sample,
round to 8 bit) with one kernel: seeded random training-distribution kernels, plus the paper's fixed kernels of the
model's degradation on other images (g^d_0.2 and g^d_2.0 for direct models, g^b_0.2 and g^b_1.3 for the bicubic
one; the multi-scale model is scored at x2, x3 and x4). A net is scored by PSNR after 10 adaptation steps; the guard
asks that no case ends below bicubic, so a net that breaks on nearly unblurred inputs is never shipped over one that
does not, and that adaptation still adds :data:`MIN_ADAPTATION_GAIN` on the random kernels: the score alone rewards
an init that drifts towards a kernel-agnostic network (x4 run 2: MZSR(0) rose by 2.4 dB, the gain fell to 0.36 dB,
MZSR(10) barely moved), which is no longer the meta-transfer model the paper ships.
"""
import cv2
import glob
import numpy as np
from os import path as osp

from mzsr_plugin.data.kernels import parse_kernel_spec, random_gaussian_kernel
from mzsr_plugin.evaluation import bicubic_psnr, degraded_case, evaluate_adaptation
from mzsr_plugin.utils.progress import progress

SELECTION_STEPS = (0, 1, 10)
# (family, kernel spec or None for a random one, scale or None for the model's) per image, in sorted file order.
SELECTION_PLAN = [('random', None, None)] * 8 + [('g_d_0.2', 'g_d_0.2', None)] * 2 + [('g_d_2.0', 'g_d_2.0', None)] * 2
SELECTION_PLANS = {
    'direct': SELECTION_PLAN,
    'bicubic': [('random', None, None)] * 8 + [('g_b_0.2', 'g_b_0.2', None)] * 2 + [('g_b_1.3', 'g_b_1.3', None)] * 2,
    # Every scale it serves, random kernels at each, g^d_2.0 at the two of the paper's Table 3.
    'multiscale': [('random_x2', None, 2)] * 3 + [('random_x3', None, 3)] * 3 + [('random_x4', None, 4)] * 2 +
    [('g_d_2.0_x2', 'g_d_2.0', 2)] * 2 + [('g_d_2.0_x4', 'g_d_2.0', 4)] * 2,
}
SELECTION_SEED = 100
SELECTION_CROP = 256  # HR side of the centre crops: keeps an evaluation under a minute on 2 CPU cores
MIN_ADAPTATION_GAIN = 0.5  # dB of MZSR(10) - MZSR(0) on the random kernels: the model-zoo issue's bar


def selection_plan(scales, downsample='direct'):
    """The selection plan of a model: see :data:`SELECTION_PLANS`.

    Args:
        scales (Sequence[int]): Scales the model serves (several: the multi-scale plan).
        downsample (str): ``'direct'`` or ``'bicubic'``.

    Returns:
        list[tuple[str, str | None, int]]: (family, kernel spec or None, scale) per image.
    """
    plan = SELECTION_PLANS['multiscale' if len(scales) > 1 else downsample]
    return [(family, spec, scale or max(scales)) for family, spec, scale in plan]


def selection_cases(val_dir, scales=(2, ), downsample='direct', crop=SELECTION_CROP):
    """Builds the selection set (the same cases on every machine and run).

    Args:
        val_dir (str): Folder of held-out HR images (HQ70), at least ``len(SELECTION_PLAN)`` of them.
        scales (Sequence[int]): Scales the model serves (see :func:`selection_plan`).
        downsample (str): Sub-sampling of the random kernels' cases (spec kernels carry their own).
        crop (int): HR crop side (cut to a multiple of each case's scale).

    Returns:
        list[tuple[str, DegradedImage]]: (family, case) pairs.
    """
    plan = selection_plan(scales, downsample)
    paths = sorted(glob.glob(osp.join(val_dir, '*.png')))
    if len(paths) < len(plan):
        raise FileNotFoundError(f'selection set: {val_dir} has {len(paths)} PNG images, the selection set needs '
                                f'{len(plan)} (HQ70 from ../shared/data/train)')
    cases = []
    for index, (path, (family, spec, scale)) in enumerate(zip(paths, plan)):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        side = min(crop, h, w) // scale * scale
        top, left = (h - side) // 2, (w - side) // 2
        rgb = np.ascontiguousarray(bgr[top:top + side, left:left + side, ::-1])
        if spec is None:
            kernel = random_gaussian_kernel(scale, 15, rng=np.random.default_rng((SELECTION_SEED, index)))
            case_downsample = downsample
        else:
            parsed = parse_kernel_spec(spec)
            kernel, case_downsample = parsed.kernel, parsed.downsample
        name = f'{osp.splitext(osp.basename(path))[0]}[{family}]'
        cases.append((family, degraded_case(name, rgb, kernel, scale, case_downsample)))
    return cases


def families(entries):
    """The kernel families of a campaign's evaluations (or recipe results), in selection-plan order."""
    return list(entries[-1]['families'])


def family_title(family):
    """``g_d_0.2`` -> ``g^d_0.2`` (the paper's notation); other names as they are."""
    return family.replace('g_d_', 'g^d_').replace('g_b_', 'g^b_')


def adaptation_gain(families, steps='10'):
    """Held-out random-kernel gain MZSR(steps) - MZSR(0), the mean over the random families.

    Args:
        families (dict): ``{family: {'0': dB, steps: dB, ...}}`` (a history entry's ``families``).
        steps (str): Adaptation steps of the gain.

    Returns:
        float | None: None when there is no random family.
    """
    randoms = [v for family, v in families.items() if family.startswith('random')]
    return float(np.mean([v[steps] - v['0'] for v in randoms])) if randoms else None


def passes_guard(result):
    """The guard of a scored net (a :func:`score_network` result or history entry), by the current rule."""
    gain = adaptation_gain(result['families'])
    return not result['below_bicubic'] and (gain is None or gain >= MIN_ADAPTATION_GAIN)


def score_network(net, cases, device='cpu'):
    """PSNR after 0/1/10 steps per case and per family, the selection score and the guard.

    Args:
        net (nn.Module): The network; ``net.inner_lrs`` (learned step sizes) are used when set.
        cases (list[tuple[str, DegradedImage]]): From :func:`selection_cases`.
        device (str | torch.device): Device.

    Returns:
        dict: ``families`` ({family: {steps: mean dB}}, plus ``bicubic``), ``cases`` ({name: {steps: dB,
        'bicubic': dB}}), ``score`` (mean PSNR after 10 steps over all cases), ``below_bicubic`` (the cases
        under their bicubic PSNR after 10 steps), ``gain`` (:func:`adaptation_gain`) and ``guard``
        (:func:`passes_guard`).
    """
    # A bar on a terminal; in a log the campaign's one [eval] line per evaluation says it all.
    results = evaluate_adaptation(net, progress([case for _, case in cases], 'selection', lines=False),
                                  SELECTION_STEPS, device=device)
    per_case, families = {}, {}
    for (family, case), result in zip(cases, results):
        entry = {str(s): result.psnr[s] for s in SELECTION_STEPS}
        entry['bicubic'] = bicubic_psnr(case)
        per_case[case.name] = entry
        families.setdefault(family, []).append(entry)
    family_means = {
        family: {key: float(np.mean([e[key] for e in entries])) for key in entries[0]}
        for family, entries in families.items()
    }
    below = [name for name, e in per_case.items() if e[str(SELECTION_STEPS[-1])] < e['bicubic']]
    score = float(np.mean([e[str(SELECTION_STEPS[-1])] for e in per_case.values()]))
    result = {'families': family_means, 'cases': per_case, 'score': score, 'below_bicubic': below,
              'gain': adaptation_gain(family_means)}
    result['guard'] = passes_guard(result)
    return result


def better(candidate, best):
    """Whether a scored net should replace the best one: the guard first, then the score.

    Args:
        candidate (dict): ``{'guard': bool, 'score': float}``.
        best (dict | None): The same for the shipped net, or None.

    Returns:
        bool
    """
    if best is None:
        return True
    return (candidate['guard'], candidate['score']) > (best['guard'], best['score'])
