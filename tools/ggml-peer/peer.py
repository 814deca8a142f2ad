#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
#
# peer.py - helper of tools/ggml-peer/run.
#
#   peer.py patch FILE      add moex's lines to ggml's tests/test-backend-ops.cpp
#                           (the DeepSeek MUL_MAT_ID perf cases and a tiled fill
#                           for tensors of more than 256M elements), inserted at
#                           anchors found in FILE; does nothing if already there.
#   peer.py table GGML_RAW MOEX_JSON BUSY_LOG L3_BYTES SMOKE
#                           print ggml's routed-expert GEMM time beside moex's.
#
# Only text written for moex is kept here; ggml's own lines are located, never
# copied.
import os
import json
import re
import sys

MARK = 'moex tools/ggml-peer'

# Inserted before ggml's init_tensor_uniform() definition.
TILED = '''\
// %s (local addition): a tensor of more than 256M elements (the
// DeepSeek-V3 MUL_MAT_ID weights: 256 x 2048 x 7168 = 3.76G) is filled with
// one random block of whole rows, repeated. The plain path keeps an f32 copy
// of the whole tensor plus a converted copy plus the tensor itself (about
// 30 GB for a V3 f32 or bf16 case) and takes 10+ s per case; the values do
// not change the timing of a matmul.
static bool init_tensor_uniform_tiled(ggml_tensor * tensor, float min, float max) {
    const int64_t nels = ggml_nelements(tensor);
    const int64_t ne0  = tensor->ne[0];
    if (nels <= (int64_t(1) << 28) || !ggml_is_contiguous(tensor) || ne0 <= 0 ||
        (tensor->type != GGML_TYPE_F32 && tensor->type != GGML_TYPE_F16 &&
         tensor->type != GGML_TYPE_BF16 && !ggml_is_quantized(tensor->type))) {
        return false;
    }
    if (ggml_quantize_requires_imatrix(tensor->type)) {
        return false;
    }
    const int64_t rows = std::max<int64_t>(1, (int64_t(1) << 24) / ne0); // ~16M elements
    std::vector<float> data(rows * ne0);
    {
        thread_local std::default_random_engine gen(std::random_device{}());
        std::uniform_real_distribution<float> distribution(min, max);
        for (auto & v : data) { v = distribution(gen); }
    }
    std::vector<uint8_t> q(ggml_row_size(tensor->type, rows * ne0));
    if (tensor->type == GGML_TYPE_F32) {
        memcpy(q.data(), data.data(), q.size());
    } else {
        ggml_quantize_chunk(tensor->type, data.data(), q.data(), 0, rows, ne0, nullptr);
    }
    const size_t row_bytes = ggml_row_size(tensor->type, ne0);
    const int64_t nrows = nels / ne0;
    const int64_t ntiles = (nrows + rows - 1) / rows;
    // copy from N_THREADS threads: the time goes into first-touch page faults
    auto copy_tiles = [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; t++) {
            const int64_t r = t * rows;
            const int64_t n = std::min(rows, nrows - r);
            ggml_backend_tensor_set(tensor, q.data(), r * row_bytes, n * row_bytes);
        }
    };
    const int64_t nt = std::max<int64_t>(1, N_THREADS);
    std::vector<std::future<void>> tasks;
    for (int64_t i = 0; i < nt; i++) {
        tasks.push_back(std::async(std::launch::async, copy_tiles, i * ntiles / nt, (i + 1) * ntiles / nt));
    }
    for (auto & t : tasks) {
        t.get();
    }
    return true;
}

''' % MARK

# Inserted as the first statement of init_tensor_uniform().
TILED_CALL = '''\
    if (init_tensor_uniform_tiled(tensor, min, max)) { // %s
        return;
    }
''' % MARK

# Inserted before the `return test_cases;` of make_test_cases_perf().
CASES = '''\
    // DeepSeek MoE experts (%s, local addition): per model the up/gate
    // projection (b = 1: one input row per token, shared by its experts) and the down
    // projection (b = 0: one input row per (token, expert)); one up/gate case stands
    // for both up and gate. test_mul_mat_id(type_a, type_b, n_mats, n_used, b, m, n, k).
    for (ggml_type type_a : {GGML_TYPE_F32, GGML_TYPE_BF16, GGML_TYPE_Q8_0}) {
        for (int n_tok : {1, 16, 128, 512}) {
            // DeepSeek-V2-Lite: dim 2048, moe_inter 1408, 64 experts, top-6
            test_cases.emplace_back(new test_mul_mat_id(type_a, GGML_TYPE_F32,  64, 6,  true, 1408, n_tok, 2048));
            test_cases.emplace_back(new test_mul_mat_id(type_a, GGML_TYPE_F32,  64, 6, false, 2048, n_tok, 1408));
            // DeepSeek-V3: dim 7168, moe_inter 2048, 256 experts, top-8
            test_cases.emplace_back(new test_mul_mat_id(type_a, GGML_TYPE_F32, 256, 8,  true, 2048, n_tok, 7168));
            test_cases.emplace_back(new test_mul_mat_id(type_a, GGML_TYPE_F32, 256, 8, false, 7168, n_tok, 2048));
        }
    }

''' % MARK


def die(msg):
    sys.stderr.write('peer.py: %s\n' % msg)
    sys.exit(1)


def one(lines, pred, what, start=0):
    hits = [i for i in range(start, len(lines)) if pred(lines[i])]
    if not hits:
        die('anchor not found: %s (another ggml version? check the file by hand)' % what)
    return hits


def patch(path):
    with open(path) as f:
        text = f.read()
    n = text.count(MARK)
    if n == 3:
        print('%s: moex lines already there' % path)
        return
    if n:
        die('%s: partly patched (%d of 3 insertions); restore it with git checkout' % (path, n))
    lines = text.splitlines(keepends=True)
    # anchor 1: the definition `static void init_tensor_uniform(ggml_tensor * tensor, ...) {`
    defn = re.compile(r'^static void init_tensor_uniform\(ggml_tensor \* tensor,.*\)\s*\{\s*$')
    hits = one(lines, defn.match, 'definition of init_tensor_uniform()')
    if len(hits) != 1:
        die('anchor not unique: definition of init_tensor_uniform()')
    a1 = hits[0]
    for need in ('N_THREADS', '#include <future>', '#include <random>'):
        if need not in ''.join(lines[:a1]):
            die('%s not seen before init_tensor_uniform()' % need)
    # anchor 2: `return test_cases;` ending make_test_cases_perf()
    perf = one(lines, lambda l: re.match(r'^static .*make_test_cases_perf\(\)\s*\{', l),
               'make_test_cases_perf()')[0]
    a2 = one(lines, lambda l: re.match(r'^\s*return test_cases;\s*$', l),
             'return test_cases; in make_test_cases_perf()', perf)[0]
    if 'test_mul_mat_id(' not in ''.join(lines[perf:a2]):
        die('make_test_cases_perf() has no test_mul_mat_id case: another ggml version?')
    lines[a2:a2] = [CASES]
    lines[a1 + 1:a1 + 1] = [TILED_CALL]
    lines[a1:a1] = [TILED]
    with open(path + '.moex-tmp', 'w') as f:
        f.write(''.join(lines))
    os.replace(path + '.moex-tmp', path)
    print('%s: moex lines added (tiled fill at line %d, DeepSeek cases at line %d)'
          % (path, a1 + 1, a2 + TILED.count('\n') + TILED_CALL.count('\n') + 1))


def table(raw_g, moex_json, busy_log, l3, smoke):
    l3 = int(l3 or 0)
    ansi = re.compile(r'\x1b\[[0-9;]*m')
    pat = re.compile(r'MUL_MAT_ID\(type_a=(\w+),type_b=f32,n_mats=(\d+),n_used=(\d+),b=(\d),'
                     r'm=(\d+),n=(\d+),k=(\d+)\):\s+(\d+) runs -\s+([\d.]+) us/run -\s+[\d.]+ \w?FLOP/run -'
                     r'\s+([\d.]+) (\w?)FLOPS')
    unit = {'': 1e-9, 'K': 1e-6, 'M': 1e-3, 'G': 1.0, 'T': 1e3}
    g = {}
    for line in open(raw_g, errors='replace'):
        m = pat.search(ansi.sub('', line))
        if not m:
            continue
        ta, nm, nu, b, mm, n, k, runs, us, fl, fu = m.groups()
        model = {'64': 'v2_lite', '256': 'v3'}.get(nm)
        if model:
            g[(model, ta, int(n), int(b))] = (float(us), float(fl) * unit[fu])
    mx = {}
    try:
        for line in open(moex_json, errors='replace'):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            m = re.match(r'^(v2_lite|v3)_no_shared_(f32|bf16|fp8)_b(\d+)_(tokens|eff_bw)$', r.get('name', ''))
            if m:
                mx.setdefault((m.group(1), m.group(2), int(m.group(3))), {})[m.group(4)] = float(r['value'])
            elif r.get('name') in ('threads', 'triad_bw', 'triad_bw_end'):
                mx[r['name']] = r['value']
    except OSError:
        pass
    shape = {'v2_lite': (64, 6, 2048, 1408), 'v3': (256, 8, 7168, 2048)}
    bpw = {'f32': 4.0, 'bf16': 2.0, 'q8_0': 34 / 32}
    peer = {'f32': 'f32', 'bf16': 'bf16', 'q8_0': 'fp8'}
    fmt = '%-7s %-9s %3s %6s %11s %6s %11s %6s %11s %10s %9s %11s %10s %9s %9s'
    print(fmt % ('model', 'ggml/moex', 'n', 'E', 'up|gate us', 'GFLOPS', 'down us', 'GFLOPS',
                 'ggml us', 'ggml tok/s', 'ggml GB/s', 'moex us', 'moex tok/s', 'moex GB/s', 'moex/ggml'))
    for model in ('v2_lite', 'v3'):
        nm, nu, dim, inter = shape[model]
        for ta in ('f32', 'bf16', 'q8_0'):
            for n in (1, 16, 128, 512):
                up, dn = g.get((model, ta, n, 1)), g.get((model, ta, n, 0))
                mo = mx.get((model, peer[ta], n), {})
                if not (up and dn) and 'tokens' not in mo:
                    continue
                e = nm * (1 - (1 - nu / nm) ** n)   # expected distinct experts, uniform ids
                row = [model, '%s/%s' % (ta, peer[ta]), n, '%.1f' % e]
                t = None
                if up and dn:
                    t = 2 * up[0] + dn[0]
                    gb = e * 3 * dim * inter * bpw[ta] / (t * 1e-6) / 1e9
                    flag = '*' if n == 1 and nu * dim * inter * bpw[ta] <= 2 * l3 else ''
                    row += ['%.1f' % up[0], '%.1f' % up[1], '%.1f' % dn[0], '%.1f' % dn[1],
                            '%.1f%s' % (t, flag), '%.2f' % (n / (t * 1e-6)), '%.2f' % gb]
                else:
                    row += ['-'] * 7
                if mo.get('tokens'):
                    tm = n / mo['tokens'] * 1e6
                    row += ['%.1f' % tm, '%.2f' % mo['tokens'], '%.2f' % mo.get('eff_bw', 0)]
                    row += ['%.2f' % (t / tm) if t and smoke != '1' else '-']
                else:
                    row += ['-'] * 4
                print(fmt % tuple(row))
    print('ggml us = 2 x (up|gate) + down: the routed-expert GEMMs only (one up|gate case stands for up and gate);')
    print('  moex us = one whole moek_cpu_layer() with n_shared = 0 (router, experts, silu-mul, combine).')
    print('E: expected distinct experts for uniform ids, n_mats x (1 - (1 - n_used/n_mats)^n).')
    print('GB/s: ggml = E x 3 matrices / time (estimated); moex = moek_active_bytes() / time, as moex-bench reports.')
    print('*: one ggml op\'s working set (n_used experts) is within 2x the L3 (%d MiB) and test-backend-ops' % (l3 >> 20))
    print('   draws the ids once per case, so the figure is partly cache, not DRAM.')
    print('q8_0 (34 B per 32 weights) stands for fp8 e4m3 (with its 128x128 scales ~1 B/weight).')
    print('moex/ggml: moex tokens/s over ggml tokens/s (> 1: moex faster).')
    if 'triad_bw' in mx:
        print('moex-bench: %s threads, triad %.2f GB/s at the start, %.2f GB/s at the end.'
              % (mx.get('threads'), mx['triad_bw'], mx.get('triad_bw_end', 0)))
    busy = [l.rsplit(':', 1) for l in open(busy_log) if ':' in l]
    warn = any(int(b) > 5 for a, b in busy)
    print('Others\' CPU use during each part (%% of all CPUs): %s%s'
          % (', '.join('%s %s%%' % (a, b.strip()) for a, b in busy),
             '   <-- WARNING: the machine was busy, figures unreliable' if warn else ''))
    if smoke == '1':
        print('SMOKE RUN: a check of the script only; ggml V2-Lite n=1 and moex-bench --quick (small shapes):')
        print('   the moex columns are not the DeepSeek shapes, so no ratio is printed.')


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'patch':
        patch(sys.argv[2])
    elif len(sys.argv) == 7 and sys.argv[1] == 'table':
        table(*sys.argv[2:])
    else:
        die('usage: peer.py patch FILE | peer.py table GGML_RAW MOEX_JSON BUSY_LOG L3_BYTES SMOKE')
