"""The official MZSR meta-test graph in TensorFlow, timed on prepared inputs: the other side of
``bench_adapt.py --precision --tf-python PYTHON`` (docs/speed.md).

It runs under a TensorFlow interpreter (TF 2.x, graph mode through ``tf.compat.v1``), never the plugin's: it imports
neither torch nor ``mzsr_plugin``. The graph is the one the official ``test.py`` builds: the 8 conv layers of
``model.py`` in NHWC with 'SAME' zero padding, ReLU, bias, the residual on the bicubic-upsampled input, the mean
absolute error and ``GradientDescentOptimizer`` with the step size fed per step; each image starts from the
checkpoint again. Bicubic upsampling is done by the caller (the plugin's MATLAB imresize, the same numbers the
official numpy ``imresize`` gives), so the timed part is TensorFlow's alone: the SGD steps, each fetching
``[train_op, loss, output]`` as the official loop does, and the final SR forward.

    python scripts/tf_official_meta_test.py INPUTS.npz CHECKPOINT_PREFIX OUT.npz [--threads 2] [--repeats 2]

INPUTS.npz holds, per image ``i``, ``son_up_i`` (the son, bicubic-upsampled to the LR's size), ``lr_i`` (the LR) and
``lr_up_i`` (the LR, bicubic-upsampled), all float32 (H, W, 3) RGB in [0, 1], plus ``lrs_<steps>`` (the step sizes of
each step count to run). OUT.npz gets ``sr_<steps>_i`` (clipped to [0, 1]) and ``seconds_<steps>`` (best of
``--repeats``, per image); the TensorFlow version and oneDNN setting are printed.
"""
import argparse
import os
import time

import numpy as np


def build_graph(tf):
    """The official MZSR network and SGD step. Returns (input, label, lr, output, loss, train_op, saver)."""
    v1 = tf.compat.v1
    image = v1.placeholder(tf.float32, [None, None, None, 3], name='input')
    label = v1.placeholder(tf.float32, [None, None, None, 3], name='label')
    step_size = v1.placeholder(tf.float32, [], name='learning_rate')
    channels = [3] + [64] * 7 + [3]
    with v1.variable_scope('MODEL'):
        out = image
        for index in range(8):
            kernel = v1.get_variable(f'conv{index + 1}/kernel', [3, 3, channels[index], channels[index + 1]])
            bias = v1.get_variable(f'conv{index + 1}/bias', [channels[index + 1]])
            out = tf.nn.bias_add(tf.nn.conv2d(out, kernel, [1, 1, 1, 1], padding='SAME'), bias)
            if index < 7:
                out = tf.nn.relu(out)
        output = image + out
    loss = v1.losses.absolute_difference(label, output)
    train_op = v1.train.GradientDescentOptimizer(step_size).minimize(loss)
    saver = v1.train.Saver(var_list=v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope='MODEL'))
    return image, label, step_size, output, loss, train_op, saver


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('inputs')
    parser.add_argument('checkpoint', help='checkpoint prefix, e.g. .../Pretrained/Pretrained')
    parser.add_argument('out')
    parser.add_argument('--threads', type=int, default=2, help='intra- and inter-op threads')
    parser.add_argument('--repeats', type=int, default=2, help='runs per image and step count; the best is kept')
    args = parser.parse_args()
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    data = np.load(args.inputs)
    count = len([k for k in data.files if k.startswith('lr_up_')])
    schedules = {int(k[len('lrs_'):]): data[k] for k in data.files if k.startswith('lrs_')}
    image, label, step_size, output, loss, train_op, saver = build_graph(tf)
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.threads,
                                      inter_op_parallelism_threads=args.threads)
    results = {}
    with tf.compat.v1.Session(config=config) as sess:
        for steps, lrs in sorted(schedules.items()):
            seconds = []
            for i in range(count):
                son_up, lr, lr_up = (data[f'{key}_{i}'][None] for key in ('son_up', 'lr', 'lr_up'))
                best = float('inf')
                for _ in range(args.repeats):
                    saver.restore(sess, args.checkpoint)  # every image adapts from the checkpoint, as test.py does
                    start = time.perf_counter()
                    for lr_value in lrs:
                        sess.run([train_op, loss, output], {image: son_up, label: lr, step_size: float(lr_value)})
                    sr = sess.run(output, {image: lr_up})
                    best = min(best, time.perf_counter() - start)
                results[f'sr_{steps}_{i}'] = np.clip(sr[0], 0, 1)
                seconds.append(best)
            results[f'seconds_{steps}'] = np.array(seconds)
    np.savez(args.out, **results)
    print(f'tensorflow {tf.__version__}, TF_ENABLE_ONEDNN_OPTS={os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}, '
          f'{args.threads} threads')


if __name__ == '__main__':
    main()
