import mmengine.dist
import numpy as np
import time
import torch
from collections import OrderedDict
from os import path as osp
from torch.nn.parallel import DistributedDataParallel

from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from mzsr_plugin.data.meta_task_dataset import crop_task_to_scale
from mzsr_plugin.model_zoo import check_record, record_is_multiscale, weights_record
from mzsr_plugin.noise_estimation import jpeg_quality, photo_degradation
from mzsr_plugin.option_schema import META_TRAIN, VAL_ADAPT, check_section
from mzsr_plugin.precision import resolve_precision
from mzsr_plugin.zssr import zssr_super_resolve
from .adaptation import at_scale, check_output_scale, resolve_adapt_lrs, super_resolve, super_resolve_image
from .cuda_graphs import GraphedMetaUpdate, graphs_available
from .inner_loop import LearnedInnerLR, detached_params, load_inner_lrs
from .meta_learning import assign_meta_gradients, multi_step_loss_weights, select_meta_engine
from .self_check import describe_fallback


@MODEL_REGISTRY.register()
class MetaSRModel(SRModel):
    """MZSR in one BasicSR model: bicubic pretraining, meta-transfer learning and test-time adaptation.

    ``train.mode: pretrain`` is plain L1 training on (LR, HR) pairs, as ``SRModel``. ``train.mode: meta`` runs
    MAML over kernel tasks from ``MZSRMetaTaskDataset`` starting from ``path.pretrain_network_g``: the
    meta-gradient of the weighted multi-step query loss (second order unless ``first_order``) is all-reduced across
    processes and applied by the meta-optimizer (``optim_g``, Adam in MZSR). In both modes and at test time,
    ``test()`` adapts a copy of the weights to each image's kernel for ``val.adapt.steps`` steps before SR, so stock
    ``basicsr/test.py`` and validation during training measure PSNR after adaptation.
    """

    def __init__(self, opt):
        if opt['is_train']:
            # A copy with the filled train section: the caller's options stay as written.
            opt = dict(opt, train=check_section(META_TRAIN, opt.get('train'), 'train'))
        if opt.get('val') is not None:
            check_section(VAL_ADAPT, opt['val'].get('adapt'))
        self.mode = opt['train']['mode'] if opt['is_train'] else 'test'
        if self.mode == 'meta' and not opt['path'].get('pretrain_network_g'):
            raise ValueError('train.mode: meta starts from pretrained weights: set path.pretrain_network_g to a '
                             '.pth from the pretraining stage (or from scripts/convert_official_mzsr.py)')
        self.kernel = None
        self.learned_inner_lr = self.graphed_update = None  # meta mode sets them in init_training_settings
        tf32 = opt['train']['tf32'] if opt['is_train'] else None
        # Resolved before BaseModel moves the net: model_to_device lays its parameters out for training.
        device = torch.device('cuda' if opt['num_gpu'] != 0 else 'cpu')
        self.train_precision = resolve_precision(opt['train']['precision'], device,
                                                 'train.precision') if opt['is_train'] else None
        if tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        super().__init__(opt)
        check_output_scale(self.get_bare_model(self.net_g), opt['scale'], opt['network_g'].get('num_in_ch', 3))

    def model_to_device(self, net):
        """Moves the net; wraps it in DDP only for distributed pretraining.

        Meta-training all-reduces its meta-gradients itself (DDP cannot do double backward), and DDP on CPU needs
        no device ids, which BasicSR's version always passes.
        """
        net = net.to(self.device)
        if self.train_precision is not None:
            net = self.train_precision.prepare_module(net)
        if self.opt['dist'] and self.mode == 'pretrain':
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            net = DistributedDataParallel(
                net, device_ids=device_ids, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return net

    # ----------------------------------------------------------------------------------------------- training
    def init_training_settings(self):
        if self.mode == 'pretrain':
            super().init_training_settings()
            return
        self.net_g.train()
        train_opt = self.opt['train']
        self.inner_lr = float(train_opt['inner_lr'])
        self.inner_steps = int(train_opt['inner_steps'])
        self.first_order = bool(train_opt['first_order'])
        self.first_order_iters = int(train_opt['first_order_iters'])
        self.loss_weight_decay = float(train_opt['loss_weight_decay'])
        self.grad_clip_norm = train_opt['grad_clip_norm']
        self.meta_engine = select_meta_engine(train_opt['meta_engine'], self.device)
        self.skipped_updates = 0
        if train_opt['learn_inner_lr']:
            net = self.get_bare_model(self.net_g)
            names = [name for name, _ in net.named_parameters()]
            self.learned_inner_lr = LearnedInnerLR(names, self.inner_steps, self.inner_lr).to(self.device)
            start = self._pretrained_inner_lrs(names)
            if start is not None:
                self.learned_inner_lr.load_state_dict(start)
        cuda_graph = train_opt['cuda_graph']
        # The captured graph is the float32 update: under bf16 the eager engine runs with autocast.
        float32 = self.train_precision.name == 'fp32'
        graphed = bool(cuda_graph) and graphs_available(self.device) and not self.opt['dist'] and float32
        if cuda_graph is True and not graphed:
            get_root_logger().warning('train.cuda_graph: true needs one CUDA process in float32 (this run: '
                                      f'{self.device}, dist {self.opt["dist"]}, precision {self.train_precision.name}'
                                      '): the eager engine runs instead')
        if graphed:
            train_opt['optim_g'] = dict(train_opt['optim_g'], capturable=True)
        self.setup_optimizers()
        if self.learned_inner_lr is not None:
            group_lr = train_opt['inner_lr_meta_lr']
            if group_lr is None:
                group_lr = train_opt['optim_g'].get('lr', 1e-4)
            self.optimizer_g.add_param_group({'params': [self.learned_inner_lr.log_lr], 'lr': float(group_lr)})
        self.setup_schedulers()
        self.graphed_update = GraphedMetaUpdate(
            self.get_bare_model(self.net_g), self.optimizer_g, self.meta_engine, self.inner_steps,
            self.learned_inner_lr, self.grad_clip_norm) if graphed else None

    def _pretrained_inner_lrs(self, names):
        """The ``inner_lrs`` of ``path.pretrain_network_g`` when it has them for ``inner_steps`` steps.

        This also resumes them: BasicSR's resume points ``pretrain_network_g`` at the newest ``net_g_<iter>.pth``,
        which :meth:`save` writes with the step sizes.
        """
        state = torch.load(self.opt['path']['pretrain_network_g'], map_location='cpu', weights_only=True)
        if not isinstance(state, dict) or not state.get('inner_lrs'):
            return None
        load_inner_lrs(state, names)  # checks the shape against the network
        log_lr = state['inner_lrs']['log_lr']
        if log_lr.shape[0] != self.inner_steps:
            get_root_logger().warning(f'path.pretrain_network_g has step sizes for {log_lr.shape[0]} inner steps, '
                                      f'train.inner_steps is {self.inner_steps}: step sizes start at inner_lr')
            return None
        return {'log_lr': log_lr}

    def save(self, epoch, current_iter):
        if self.learned_inner_lr is None:
            super().save(epoch, current_iter)
            return
        # The learned step sizes belong to the weights: a .pth without them would adapt with the wrong steps.
        self.save_network([self.net_g, self.learned_inner_lr], 'net_g', current_iter, param_key=['params', 'inner_lrs'])
        self.save_training_state(epoch, current_iter)

    def feed_data(self, data):
        if 'support_lq' in data:
            keys = ('support_lq', 'support_gt', 'query_lq', 'query_gt')
            self.tasks = tuple(data[key].to(self.device) for key in keys)
            self.task_scales = [int(s) for s in data['scale']]
            self.task_gt_size = int(data['support_gt'].shape[-1])
            return
        super().feed_data(data)
        if self.train_precision is not None:
            self.lq = self.train_precision.layout(self.lq)
        self.kernel = data['kernel'].to(self.device) if 'kernel' in data else None
        self.downsample = data['downsample'][0] if 'downsample' in data else 'direct'
        self.image_scale = int(data['scale'][0]) if 'scale' in data else self.opt['scale']
        self.lq_path = data['lq_path'][0] if 'lq_path' in data else None

    def optimize_parameters(self, current_iter):
        with self.train_precision.steps():
            if self.mode == 'pretrain':
                super().optimize_parameters(current_iter)
            else:
                self.optimize_meta(current_iter)

    def _scale_groups(self):
        """Splits the task batch by scale; each group's tensors are cut to the valid (unpadded) region."""
        groups = OrderedDict()
        for index, scale in enumerate(self.task_scales):
            groups.setdefault(scale, []).append(index)
        if len(groups) == 1:
            return [(self.task_scales[0], self.tasks)]
        if not hasattr(self.get_bare_model(self.net_g), 'scale'):
            raise ValueError(f'{type(self.get_bare_model(self.net_g)).__name__} has a fixed scale, but the task '
                             f'batch mixes scales {sorted(groups)}: multi-scale meta-training needs an arch with '
                             'a `scale` attribute such as MZSRNet')
        result = []
        for scale, indices in groups.items():
            picked = [t[indices] for t in self.tasks]
            support_lq, support_gt = crop_task_to_scale(picked[0], picked[1], scale, self.task_gt_size)
            query_lq, query_gt = crop_task_to_scale(picked[2], picked[3], scale, self.task_gt_size)
            result.append((scale, (support_lq, support_gt, query_lq, query_gt)))
        return result

    def optimize_meta(self, current_iter):
        """One meta-update: meta-gradients over the task batch, all-reduced, checked, applied by the optimizer."""
        net = self.get_bare_model(self.net_g)
        weights = multi_step_loss_weights(self.inner_steps, current_iter - 1, self.loss_weight_decay)
        second_order = not self.first_order and current_iter > self.first_order_iters
        groups = self._scale_groups()
        learned = self.learned_inner_lr
        if self.graphed_update is not None and len(groups) == 1:
            scale, tasks = groups[0]
            with at_scale(net, scale):
                meta_loss, support_losses, query_losses, grad_norm, finite = self.graphed_update.step(
                    tasks, weights, self.inner_lr, second_order)
        else:
            meta_loss, support_losses, query_losses, grad_norm, finite = self._eager_meta_update(
                net, groups, weights, second_order)
            tasks = groups[-1][1]
        if not finite:
            self.skipped_updates += 1
            get_root_logger().warning(f'iter {current_iter}: non-finite meta-loss or meta-gradient '
                                      f'(loss {float(meta_loss):.4g}, grad norm {float(grad_norm):.4g}); '
                                      f'update skipped ({self.skipped_updates} so far)')

        log = OrderedDict(l_meta=meta_loss.detach(), l_query_pre=query_losses[0])
        for step in range(self.inner_steps):
            log[f'l_support_{step}'] = support_losses[step]
            log[f'l_query_{step + 1}'] = query_losses[step + 1]
        log['grad_norm'] = grad_norm.detach()
        if learned is not None:
            log['inner_lr_mean'] = learned().detach().mean()
        log['w_final'] = torch.tensor(weights[-1], device=self.device)
        log['skipped_updates'] = torch.tensor(float(self.skipped_updates), device=self.device)
        self.log_dict = self.reduce_loss_dict(log)
        self._last_tasks = tasks

    def _eager_meta_update(self, net, groups, weights, second_order):
        """The meta-update with the eager engines; returns meta-loss, losses, grad norm and whether it was applied."""
        params = dict(net.named_parameters())
        learned = self.learned_inner_lr
        # A leaf copy: the engines return its gradient, chained below to the log step sizes that Adam updates.
        inner_lr = learned().detach().requires_grad_(True) if learned is not None else self.inner_lr
        num_tasks = len(self.task_scales)
        grads = {name: torch.zeros_like(p) for name, p in params.items()}
        if learned is not None:
            grads['inner_lr'] = torch.zeros_like(inner_lr)
        meta_loss, support_losses, query_losses = 0, 0, 0
        for scale, tasks in groups:
            share = tasks[0].shape[0] / num_tasks
            with at_scale(net, scale):
                g, m, s, q = self.meta_engine(net, params, tasks, inner_lr, self.inner_steps, weights, second_order)
            for name in grads:
                grads[name] += share * g[name]
            meta_loss, support_losses, query_losses = (meta_loss + share * m, support_losses + share * s,
                                                       query_losses + share * q)
        if self.opt['dist']:
            # Mean over processes = mean over the union of their tasks (every process holds as many tasks).
            for g in grads.values():
                mmengine.dist.all_reduce(g, op='mean')
        self.optimizer_g.zero_grad(set_to_none=True)
        grad_norm = assign_meta_gradients(params, grads, learned, inner_lr)
        finite = bool(torch.isfinite(meta_loss)) and bool(torch.isfinite(grad_norm))
        if finite:
            if self.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(params.values(), float(self.grad_clip_norm))
            self.optimizer_g.step()
        else:
            self.optimizer_g.zero_grad(set_to_none=True)
        return meta_loss, support_losses, query_losses, grad_norm, finite

    # ---------------------------------------------------------------------------------------------- test time
    def _adapt_opt(self):
        # Checked once more here: test() may run with options set after the model was built.
        return check_section(VAL_ADAPT, (self.opt.get('val') or {}).get('adapt'))

    def test(self):
        """SR of ``self.lq`` after adapting a copy of the weights to ``self.kernel`` (``val.adapt``).

        ``val.adapt`` keys: ``mode`` (``mzsr``, or ``zssr`` for the ZSSR baseline trained from scratch per image),
        ``steps`` (0 = plain inference), ``lr`` (preset name, number or per-step list; default: the official
        schedule for the model kind), ``multiscale``, ``self_ensemble``, ``back_projection`` (iterations),
        ``tile`` (LR tile size for inference of large images), ``crop_budget`` (most LR pixels to adapt on),
        ``seed`` (adaptation crops, ZSSR), ``zssr_iters``, ``log_psnr`` (PSNR after every step when GT exists,
        default true), ``noise`` and ``jpeg`` (what the son reproduces of the LR, ``auto`` by default) and
        ``self_check`` (held-out fallback, default true; its outcome is ``self.self_check`` and logged when it falls
        back) and ``precision`` (``auto``, ``fp32`` or ``bf16``: :mod:`~mzsr_plugin.precision`).
        """
        adapt_opt = self._adapt_opt()
        steps = adapt_opt['steps']
        record = self._check_weights_record() if not self.opt['is_train'] else None
        net = self.get_bare_model(self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g)
        was_training = net.training
        net.eval()
        start = time.perf_counter()
        self.adapt_psnr = []
        zssr = adapt_opt['mode'] == 'zssr'
        if (steps > 0 or zssr) and self.kernel is None:
            raise ValueError('test-time adaptation needs a kernel for every image: use a dataset that gives one '
                             '(type: MZSRKernelTestDataset) or set val.adapt.steps: 0')
        if (steps > 0 or zssr) and self.lq.shape[0] != 1:
            raise ValueError(f'test-time adaptation works on one image at a time; got a batch of '
                             f'{self.lq.shape[0]} (set batch_size_per_gpu: 1 for test/val datasets)')
        self.self_check = None
        precision = resolve_precision(adapt_opt['precision'], self.device, 'val.adapt.precision')
        son = self._son_degradation(adapt_opt) if steps > 0 or zssr else {'std': 0.0, 'son_jpeg': None}
        if zssr:
            self.output = zssr_super_resolve(
                self.lq,
                self.kernel[0],
                self.image_scale,
                self.downsample,
                device=self.device,
                max_iters=int(adapt_opt['zssr_iters']),
                seed=adapt_opt['seed'],
                noise_std=son['std'],
                jpeg_quality=son['son_jpeg'],
                precision=precision)[0]
        else:
            multiscale = adapt_opt['multiscale'] or record_is_multiscale(record)
            lrs = resolve_adapt_lrs(adapt_opt['lr'], steps, self.image_scale, self.downsample, multiscale,
                                    self._learned_step_sizes()) if steps else []
            log_psnr = bool(steps) and adapt_opt['log_psnr'] and hasattr(self, 'gt')
            if log_psnr:
                self.adapt_psnr.append(self._psnr_with(net, detached_params(net)))

            def on_step(step, params, loss):
                self.adapt_psnr.append(self._psnr_with(net, params))

            kernel = self.kernel[0] if self.kernel is not None else None
            self.output, info = super_resolve_image(
                net,
                self.lq,
                kernel,
                self.image_scale,
                steps,
                lrs,
                self.downsample,
                self_ensemble=adapt_opt['self_ensemble'],
                back_projection=int(adapt_opt['back_projection']),
                tile=adapt_opt['tile'],
                crop_budget=adapt_opt['crop_budget'],
                rng=np.random.default_rng(adapt_opt['seed']),
                on_step=on_step if log_psnr else None,
                noise_std=son['std'],
                noise_seed=adapt_opt['seed'] or 0,
                jpeg_quality=son['son_jpeg'],
                self_check=adapt_opt['self_check'],
                precision=precision)
            self.self_check = info['self_check']
            if self.self_check and self.self_check['choice'] != f'MZSR({steps})':
                get_root_logger().warning(f'{self.lq_path}: self-check: {describe_fallback(self.self_check)}')
        self.adapt_time = time.perf_counter() - start
        net.train(was_training)

    def _son_degradation(self, adapt_opt):
        """The noise and JPEG quality the son reproduces (``val.adapt.noise``/``jpeg``; see
        :func:`~mzsr_plugin.noise_estimation.photo_degradation`)."""
        path = self.lq_path
        quality = jpeg_quality(path) if path and osp.isfile(path) else None
        lr = self.lq[0].float().permute(1, 2, 0).cpu().numpy()
        return photo_degradation(
            lr,
            quality,
            self.kernel[0].cpu().numpy(),
            self.image_scale,
            self.downsample,
            adapt_opt['noise'],
            adapt_opt['jpeg'],
            seed=adapt_opt['seed'] or 0)

    def _check_weights_record(self):
        """Test mode: refuses weights whose ``model_record`` names another scale or downsampling than the image's
        (x2 weights never run at x4 in silence); weights without a record warn once per scale and downsampling.

        Returns:
            dict | None: The record of ``path.pretrain_network_g``.
        """
        path = self.opt['path'].get('pretrain_network_g')
        if not path:
            return None
        if not hasattr(self, '_weights_record'):
            self._weights_record, self._records_checked = weights_record(path), set()
        if (self.image_scale, self.downsample) not in self._records_checked:
            check_record(self._weights_record, path, self.image_scale, self.downsample, 'path.pretrain_network_g')
            self._records_checked.add((self.image_scale, self.downsample))
        return self._weights_record

    def _learned_step_sizes(self):
        """Step sizes being meta-learned, else those of the loaded weights (``path.pretrain_network_g``), or None."""
        if self.learned_inner_lr is not None:
            return self.learned_inner_lr.as_dicts()
        if not hasattr(self, '_loaded_inner_lrs'):
            path = self.opt['path'].get('pretrain_network_g')
            state = torch.load(path, map_location='cpu', weights_only=True) if path else None
            names = [name for name, _ in self.get_bare_model(self.net_g).named_parameters()]
            self._loaded_inner_lrs = load_inner_lrs(state, names) if state is not None else None
        return self._loaded_inner_lrs

    def _psnr_with(self, net, params):
        with at_scale(net, self.image_scale):
            sr = super_resolve(net, params, self.lq)
        metric = {'type': 'calculate_mzsr_psnr', 'crop_border': self.image_scale}
        return calculate_metric({'img': tensor2img(sr), 'img2': tensor2img(self.gt)}, metric)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self._adapt_curves = []
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        self._log_adapt_curves(dataloader.dataset.opt['name'], current_iter, tb_logger)

    def get_current_visuals(self):
        # Collected here because SRModel's validation calls this once per image, right after test().
        if getattr(self, 'adapt_psnr', None):
            self._adapt_curves.append(self.adapt_psnr)
        return super().get_current_visuals()

    def _log_adapt_curves(self, dataset_name, current_iter, tb_logger):
        curves = [c for c in getattr(self, '_adapt_curves', []) if c]
        if not curves:
            return
        length = min(len(c) for c in curves)
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
        get_root_logger().info(f'{dataset_name}: mean PSNR after 0..{length - 1} adaptation steps: ' +
                               ' '.join(f'{v:.4f}' for v in mean))
        if tb_logger:
            for step, value in enumerate(mean):
                tb_logger.add_scalar(f'adapt_psnr/{dataset_name}/step_{step}', value, current_iter)
            self._log_task_images(tb_logger, current_iter)

    def _log_task_images(self, tb_logger, current_iter):
        """Writes a few query LR / output / GT images of the last meta-batch, as the official code did."""
        tasks = getattr(self, '_last_tasks', None)
        if tasks is None:
            return
        net = self.get_bare_model(self.net_g)
        query_lq, query_gt = tasks[2][0, :4], tasks[3][0, :4]
        with torch.no_grad():
            output = net(query_lq).clamp(0, 1)
        size = query_gt.shape[-2:]
        lq_up = torch.nn.functional.interpolate(query_lq, size=size, mode='nearest')
        tb_logger.add_images('meta_query/lq', lq_up, current_iter)
        tb_logger.add_images('meta_query/output', output[..., :size[0], :size[1]], current_iter)
        tb_logger.add_images('meta_query/gt', query_gt, current_iter)

    def get_current_log(self):
        return self.log_dict
