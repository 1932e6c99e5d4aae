#!/usr/bin/env python3
"""Rewrite a .cu file into C++ for the CPU emulator: cu2cc.py IN.cu OUT.cc

Only the CUDA syntax that C++ lacks changes; everything else is compiled as
written, with the emulator's headers first on the include path:
  kernel<<<grid, block[, shmem[, stream]]>>>(args)  ->  cuemu_launch("kernel", kernel,
                                                         cuemu_config(grid, block, ...), args)
  extern __shared__ T name[];                       ->  T *name = (T *)cuemu_dynamic_smem();
  __shared__ T name[N]...;                          ->  static T name_pools[CUEMU_POOLS][N]...;
                                                        auto &name = name_pools[cuemu_pool()];
                                                        cuemu_shared_fresh(name, sizeof(name));
                                                        (a copy for each pool of blocks that may
                                                        overlap; undefined, as on a device, in
                                                        each block)
and `#pragma unroll` (which g++ does not know) is dropped.  Line breaks are kept and a #line
directive names the original, so compiler messages point into IN.cu.
"""
import re
import sys

LAUNCH = re.compile(r'\b([A-Za-z_]\w*(?:\s*<[^<>;(){}]*>)?)\s*<<<(.*?)>>>\s*\(', re.S)
UNROLL = re.compile(r'^[ \t]*#pragma[ \t]+unroll\b.*$', re.M)
STATIC_SMEM = re.compile(r'(?<!extern )__shared__\s+([A-Za-z_][\w\s]*?)\s+(\w+)\s*'
                         r'((?:\[[^\];]+\])+)\s*;')
DYN_SMEM = re.compile(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?'
                      r'([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;')


def launch(m):
    name, cfg = m.group(1), m.group(2)
    tail = m.string[m.end():]
    comma = '' if tail.lstrip().startswith(')') else ', '
    return 'cuemu_launch("%s", %s, cuemu_config(%s)%s' % (
        ' '.join(name.split()), name, cfg, comma)


def main():
    src_path, out_path = sys.argv[1], sys.argv[2]
    with open(src_path) as f:
        src = f.read()
    out, n = LAUNCH.subn(launch, src)
    out = DYN_SMEM.sub(r'\1 *\2 = (\1 *)cuemu_dynamic_smem();', out)
    out = UNROLL.sub('', out)
    out = STATIC_SMEM.sub(r'static \1 \2_pools[CUEMU_POOLS]\3; '
                          r'auto &\2 = \2_pools[cuemu_pool()]; '
                          r'cuemu_shared_fresh(\2, sizeof(\2));', out)
    if n == 0:
        sys.exit('cu2cc: no kernel launch found in ' + src_path)
    with open(out_path, 'w') as f:
        f.write('#line 1 "%s"\n' % src_path)
        f.write(out)


if __name__ == '__main__':
    main()
