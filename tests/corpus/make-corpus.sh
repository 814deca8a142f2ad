#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/corpus/make-corpus.sh - write the kept corpus of safetensors files
# and model directories, valid and malformed, with the table of what each
# must give (tests/corpus/expect, read by tests/unit/test_model.c) and
# tests/corpus/README. Deterministic: run it again and `git diff` shows
# nothing. The corpus also seeds the fuzzer (tests/fuzz/).
#
# usage: tests/corpus/make-corpus.sh [DIR]   (default: this script's directory)
set -eu
export LC_ALL=C

top=${1:-$(cd "$(dirname "$0")" && pwd)}
out=$top/safetensors
expect=$top/expect
readme=$top/README

rm -rf "$out"
mkdir -p "$out"

# ---- writers ---------------------------------------------------------------

# le64 N: N as 8 little-endian bytes (N may be negative: two's complement).
le64() {
	local n=$1 i
	for i in 0 1 2 3 4 5 6 7; do
		printf "\\$(printf %03o $((n & 255)))"
		n=$((n >> 8))
	done
}

# raw FILE HEADER DATALEN [HEADERLEN]: a safetensors file whose header is
# HEADER as a printf(1) format (so '\xff' writes a raw byte and '\\' one
# backslash), followed by DATALEN zero bytes; HEADERLEN overrides the
# length field.
raw() {
	local f=$1 tmp n
	tmp=$(mktemp)
	printf "$2" >"$tmp"
	n=$(stat -c %s "$tmp")
	{ le64 "${4:-$n}"; cat "$tmp"; head -c "$3" /dev/zero; } >"$f"
	rm -f "$tmp"
}

esize() {
	case $1 in
	F64|I64|U64) echo 8 ;;
	F32|I32|U32) echo 4 ;;
	BF16|F16|I16|U16) echo 2 ;;
	*) echo 1 ;;
	esac
}

# shard FILE SPEC...: a valid file with tensors SPEC = name:DTYPE:d0,d1,..
# laid out one after the other, zero-filled.
shard() {
	local f=$1 s n dt shp d prod nb off=0 hdr="" sep=""
	shift
	for s in "$@"; do
		IFS=: read -r n dt shp <<<"$s"
		prod=1
		for d in ${shp//,/ }; do prod=$((prod * d)); done
		nb=$((prod * $(esize "$dt")))
		hdr="$hdr$sep\"$n\":{\"dtype\":\"$dt\",\"shape\":[$shp],\"data_offsets\":[$off,$((off + nb))]}"
		sep=,
		off=$((off + nb))
	done
	raw "$f" "{\"__metadata__\":{\"format\":\"pt\"},$hdr}" "$off"
}

# index DIR SHARD:SPEC...: model.safetensors.index.json for these tensors.
index() {
	local d=$1 s f n sep=""
	shift
	{
		printf '{"metadata":{"total_size":0},"weight_map":{'
		for s in "$@"; do
			f=${s%%:*}
			n=${s#*:}
			n=${n%%:*}
			printf '%s\n  "%s":"%s"' "$sep" "$n" "$f"
			sep=,
		done
		printf '\n}}\n'
	} >"$d/model.safetensors.index.json"
}

# ---- the table -------------------------------------------------------------

: >"$expect"
cat >"$readme" <<'EOF'
Kept corpus of safetensors files and model directories
======================================================

Written by make-corpus.sh (run it again after changing it; the output is
deterministic), read by tests/unit/test_model.c through the table in
`expect`, and used as the seed corpus of the fuzzer (tests/fuzz/).

`expect` has one tab-separated line per case: KIND NAME LAYER ERRNO KEYWORD.
KIND `file`: moex__st_read_header() on safetensors/NAME; `dir`:
moex__model_read() on safetensors/NAME; `layer`: moex__model_read() must
succeed, then moex__model_layer(LAYER). ERRNO is what it must return (0 for
valid input) and KEYWORD a string its error message must contain.

The directory cases use a tiny DeepSeek-style model: hidden_size 8,
moe_intermediate_size 4, 4 routed experts, top-2, 1 shared expert, 2
layers of which layer 1 is the MoE layer (first_k_dense_replace 1).

| case | expected | what it is |
|------|----------|------------|
EOF

# case KIND NAME LAYER ERRNO KEYWORD DESCRIPTION
case_() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$expect"
	local what=$2
	[ "$1" = layer ] && what="$2, layer $3"
	printf '| %s | %s | %s |\n' "$what" "${4/#0/0 (valid)}" "$6" >>"$readme"
}

# ---- single files ----------------------------------------------------------

T='"dtype":"F32","shape":[2],"data_offsets"'

raw "$out/valid.safetensors" \
	'{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}}' 20
case_ file valid.safetensors - 0 "" "two tensors and __metadata__"

raw "$out/valid-empty.safetensors" '{}' 0
case_ file valid-empty.safetensors - 0 "" "no tensors at all"

raw "$out/valid-padded.safetensors" \
	'{"a":{'"$T"':[0,8]}}        ' 8
case_ file valid-padded.safetensors - 0 "" "header padded with trailing spaces, as the safetensors writer aligns it"

raw "$out/valid-unicode.safetensors" \
	'{"caf\\u00e9":{'"$T"':[0,8]},"\xe6\x97\xa5\\ud83d\\ude00":{'"$T"':[8,16]}}' 16
case_ file valid-unicode.safetensors - 0 "" "names with a \\u escape, raw UTF-8 and a surrogate pair"

raw "$out/valid-scalar-gap.safetensors" \
	'{"s":{"dtype":"F32","shape":[],"data_offsets":[8,12]},"z":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},"i":{"dtype":"I64","shape":[1],"data_offsets":[12,20]}}' 20
case_ file valid-scalar-gap.safetensors - 0 "" "a scalar, an empty tensor and a gap before the first tensor (gaps are allowed)"

printf 'abcde' >"$out/short-file.safetensors"
case_ file short-file.safetensors - EINVAL "shorter than the 8-byte" "5 bytes: not even the header length"

raw "$out/truncated-header.safetensors" '{"a":{"dtype":"F32","shape":[2' 0
case_ file truncated-header.safetensors - EINVAL "end of input" "the file ends inside the JSON header (its length field agrees)"

raw "$out/header-beyond-file.safetensors" '{"a":{'"$T"':[0,8]}}' 8 1000
case_ file header-beyond-file.safetensors - EINVAL "beyond the file" "header length 1000 in a file of 51 bytes"

raw "$out/header-len-max.safetensors" '{}' 0 -1
case_ file header-len-max.safetensors - EINVAL "beyond the file" "header length 2^64-1"

raw "$out/header-len-zero.safetensors" '{}' 0 0
case_ file header-len-zero.safetensors - EINVAL "header length 0" "header length 0"

raw "$out/overlap.safetensors" \
	'{"a":{'"$T"':[0,8]},"b":{'"$T"':[4,12]}}' 12
case_ file overlap.safetensors - EINVAL "overlap" "two tensors share bytes 4 to 8"

raw "$out/out-of-range.safetensors" '{"a":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}' 16
case_ file out-of-range.safetensors - EINVAL "out of range" "data_offsets end past the end of the file"

raw "$out/begin-gt-end.safetensors" '{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}' 8
case_ file begin-gt-end.safetensors - EINVAL "begin > end" "data_offsets [8, 4]"

raw "$out/bytes-mismatch.safetensors" '{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}' 16
case_ file bytes-mismatch.safetensors - EINVAL "hold 8 bytes, dtype F32 and shape say 16" "F32 [2, 2] in 8 bytes"

raw "$out/unknown-dtype.safetensors" '{"a":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}}' 8
case_ file unknown-dtype.safetensors - EINVAL "unknown dtype" "dtype Q4_K"

raw "$out/dtype-not-string.safetensors" '{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}' 8
case_ file dtype-not-string.safetensors - EINVAL "dtype is not a string" "dtype 4"

raw "$out/non-utf8-name.safetensors" '{"a\xff":{'"$T"':[0,8]}}' 8
case_ file non-utf8-name.safetensors - EINVAL "invalid UTF-8" "a name holding the byte 0xff"

raw "$out/overlong-utf8.safetensors" '{"a\xc0\xaf":{'"$T"':[0,8]}}' 8
case_ file overlong-utf8.safetensors - EINVAL "invalid UTF-8" "a name holding an overlong '/' (0xc0 0xaf)"

raw "$out/overlong-utf8-3.safetensors" '{"a\xe0\x80\xaf":{'"$T"':[0,8]}}' 8
case_ file overlong-utf8-3.safetensors - EINVAL "invalid UTF-8" "a three-byte overlong '/' (0xe0 0x80 0xaf)"

raw "$out/surrogate-utf8.safetensors" '{"a\xed\xa0\x80":{'"$T"':[0,8]}}' 8
case_ file surrogate-utf8.safetensors - EINVAL "invalid UTF-8" "a UTF-8 encoded surrogate (U+D800)"

raw "$out/truncated-utf8.safetensors" '{"a\xe6\x97":{'"$T"':[0,8]}}' 8
case_ file truncated-utf8.safetensors - EINVAL "invalid UTF-8" "a three-byte sequence cut after two"

raw "$out/lone-surrogate.safetensors" '{"a\\ud800":{'"$T"':[0,8]}}' 8
case_ file lone-surrogate.safetensors - EINVAL "lone high surrogate" "\\ud800 not followed by a low surrogate"

raw "$out/nul-escape.safetensors" '{"a\\u0000b":{'"$T"':[0,8]}}' 8
case_ file nul-escape.safetensors - EINVAL "u0000" "a name with \\u0000 (names are C strings)"

raw "$out/control-char.safetensors" '{"a\x01":{'"$T"':[0,8]}}' 8
case_ file control-char.safetensors - EINVAL "control character" "a raw control character in a name"

raw "$out/bad-escape.safetensors" '{"a\\x41":{'"$T"':[0,8]}}' 8
case_ file bad-escape.safetensors - EINVAL "invalid escape" "\\x41 is not a JSON escape"

raw "$out/duplicate-names.safetensors" \
	'{"a":{'"$T"':[0,8]},"a":{'"$T"':[8,16]}}' 16
case_ file duplicate-names.safetensors - EINVAL "duplicate key \"a\"" "the same tensor name twice"

raw "$out/duplicate-keys.safetensors" \
	'{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8
case_ file duplicate-keys.safetensors - EINVAL "duplicate key \"dtype\"" "a tensor with dtype twice"

deep=$(printf '[%.0s' $(seq 100))$(printf ']%.0s' $(seq 100))
raw "$out/deep-nesting.safetensors" "{\"__metadata__\":$deep}" 0
case_ file deep-nesting.safetensors - EINVAL "nesting deeper than 64" "100 nested arrays"

raw "$out/trailing-garbage.safetensors" '{"a":{'"$T"':[0,8]}} x' 8
case_ file trailing-garbage.safetensors - EINVAL "trailing bytes" "a byte after the JSON value"

raw "$out/bom.safetensors" '\xef\xbb\xbf{}' 0
case_ file bom.safetensors - EINVAL "byte order mark" "a UTF-8 byte order mark before the JSON"

raw "$out/nan.safetensors" '{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}' 8
case_ file nan.safetensors - EINVAL "value expected" "NaN is not JSON"

raw "$out/inf.safetensors" '{"a":{"dtype":"F32","shape":[1e999],"data_offsets":[0,8]}}' 8
case_ file inf.safetensors - EINVAL "shape[0] is not an integer" "a dimension of 1e999"

raw "$out/float-dim.safetensors" '{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}' 8
case_ file float-dim.safetensors - EINVAL "shape[0] is not an integer" "a dimension of 2.0"

raw "$out/leading-zero.safetensors" '{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}' 8
case_ file leading-zero.safetensors - EINVAL "expected in array" "02 is not a JSON number"

raw "$out/huge-offset.safetensors" '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}}' 8
case_ file huge-offset.safetensors - EINVAL "data_offsets is not" "an offset of 2^64"

raw "$out/max-offset.safetensors" '{"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}}' 8
case_ file max-offset.safetensors - EINVAL "out of range" "offsets near 2^64 (exact 64-bit integers, no wrap)"

raw "$out/negative-offset.safetensors" '{"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}}' 8
case_ file negative-offset.safetensors - EINVAL "data_offsets is not" "a negative offset"

raw "$out/shape-overflow.safetensors" '{"a":{"dtype":"BF16","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}}' 8
case_ file shape-overflow.safetensors - EINVAL "overflows" "a shape whose product overflows 64 bits"

raw "$out/too-many-dims.safetensors" '{"a":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]}}' 8
case_ file too-many-dims.safetensors - EINVAL "dimensions" "5 dimensions (moex reads at most 4)"

raw "$out/missing-data-offsets.safetensors" '{"a":{"dtype":"F32","shape":[2]}}' 8
case_ file missing-data-offsets.safetensors - EINVAL "missing \"data_offsets\"" "a tensor without data_offsets"

raw "$out/offsets-three.safetensors" '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}' 8
case_ file offsets-three.safetensors - EINVAL "data_offsets is not" "data_offsets with three numbers"

raw "$out/unknown-key.safetensors" '{"a":{'"$T"':[0,8],"offset":0}}' 8
case_ file unknown-key.safetensors - EINVAL "unknown key" "a tensor entry with an unknown key"

raw "$out/not-object.safetensors" '[1,2]' 0
case_ file not-object.safetensors - EINVAL "not an object" "the header is an array"

raw "$out/tensor-not-object.safetensors" '{"a":[0,8]}' 8
case_ file tensor-not-object.safetensors - EINVAL "not an object" "a tensor entry that is an array"

raw "$out/metadata-not-string.safetensors" '{"__metadata__":{"n":1}}' 0
case_ file metadata-not-string.safetensors - EINVAL "__metadata__" "__metadata__ with a number value"

raw "$out/empty-name.safetensors" '{"":{'"$T"':[0,8]}}' 8
case_ file empty-name.safetensors - EINVAL "empty name" "a tensor named \"\""

raw "$out/missing-comma.safetensors" '{"a":{"dtype":"F32" "shape":[2],"data_offsets":[0,8]}}' 8
case_ file missing-comma.safetensors - EINVAL "expected in object" "two members without a comma"

raw "$out/trailing-comma.safetensors" '{"a":{'"$T"':[0,8]},}' 8
case_ file trailing-comma.safetensors - EINVAL "string key expected" "a comma before the closing brace"

# ---- model directories -----------------------------------------------------

H=8 I=4 E=4 S=4 L=1

# specs DTYPE [SCALES]: the tensors of MoE layer L (gate BF16).
specs() {
	local dt=$1 e p
	echo "model.layers.$L.mlp.gate.weight:BF16:$E,$H"
	for e in $(seq 0 $((E - 1))) shared; do
		if [ "$e" = shared ]; then p=model.layers.$L.mlp.shared_experts
		else p=model.layers.$L.mlp.experts.$e; fi
		echo "$p.gate_proj.weight:$dt:$I,$H"
		echo "$p.up_proj.weight:$dt:$I,$H"
		echo "$p.down_proj.weight:$dt:$H,$I"
		if [ "${2:-}" = scales ]; then
			echo "$p.gate_proj.weight_scale_inv:F32:1,1"
			echo "$p.up_proj.weight_scale_inv:F32:1,1"
			echo "$p.down_proj.weight_scale_inv:F32:1,1"
		fi
	done
}

config() { # config DIR [EXTRA-JSON-MEMBERS]
	cat >"$1/config.json" <<EOF
{
  "architectures": ["DeepseekV2ForCausalLM"],
  "hidden_size": $H,
  "moe_intermediate_size": $I,
  "n_routed_experts": $E,
  "num_experts_per_tok": 2,
  "n_shared_experts": 1,
  "n_group": 1,
  "topk_group": 1,
  "routed_scaling_factor": 1.0,
  "scoring_func": "softmax",
  "topk_method": "greedy",
  "norm_topk_prob": false,
  "first_k_dense_replace": 1,
  "num_hidden_layers": 2,
  "vocab_size": 16${2:+,
  $2}
}
EOF
}

# A two-shard bf16 model: embed + gate + experts 0, 1 in the first shard.
two_shards() { # two_shards DIR [SPEC-FILTER-SED]
	local d=$1 a b
	mkdir -p "$d"
	mapfile -t all < <({ echo "model.embed_tokens.weight:BF16:16,$H"; specs BF16; } | sed "${2:-}")
	a=() b=()
	for s in "${all[@]}"; do
		case $s in
		*experts.[23].*|*shared_experts*) b+=("$s") ;;
		*) a+=("$s") ;;
		esac
	done
	shard "$d/model-00001-of-00002.safetensors" "${a[@]}"
	shard "$d/model-00002-of-00002.safetensors" "${b[@]}"
	idx=()
	for s in "${a[@]}"; do idx+=("model-00001-of-00002.safetensors:$s"); done
	for s in "${b[@]}"; do idx+=("model-00002-of-00002.safetensors:$s"); done
	index "$d" "${idx[@]}"
}

d=$out/dir-valid-bf16
two_shards "$d"
config "$d"
case_ dir dir-valid-bf16 - 0 "" "a valid bf16 model in two shards with an index"
case_ layer dir-valid-bf16 1 0 "" "its MoE layer 1"
case_ layer dir-valid-bf16 0 EINVAL "not a MoE layer" "layer 0 is dense (first_k_dense_replace 1)"
case_ layer dir-valid-bf16 2 EINVAL "not a MoE layer" "layer 2 is past num_hidden_layers"

d=$out/dir-valid-fp8
mkdir -p "$d"
mapfile -t all < <(specs F8_E4M3 scales; echo "model.layers.$L.mlp.gate.e_score_correction_bias:F32:$E")
shard "$d/model.safetensors" "${all[@]}"
cat >"$d/config.json" <<EOF
{"hidden_size": $H, "moe_intermediate_size": $I, "n_routed_experts": $E,
 "num_experts_per_tok": 2, "n_shared_experts": 1, "n_group": 2,
 "topk_group": 1, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
 "topk_method": "noaux_tc", "norm_topk_prob": true,
 "first_k_dense_replace": 1, "num_hidden_layers": 2,
 "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
   "quant_method": "fp8", "weight_block_size": [128, 128]}}
EOF
case_ layer dir-valid-fp8 1 0 "" "a valid fp8 model in one model.safetensors, V3-style config (sigmoid, noaux_tc with the bias, groups)"

d=$out/dir-no-config
two_shards "$d"
case_ dir dir-no-config - ENOENT "config.json: missing" "no config.json"

d=$out/dir-no-weights
mkdir -p "$d"
config "$d"
case_ dir dir-no-weights - ENOENT "neither" "config.json but neither an index nor model.safetensors"

d=$out/dir-config-missing-key
two_shards "$d"
config "$d"
sed -i '/"hidden_size"/d' "$d/config.json"
case_ dir dir-config-missing-key - EINVAL "missing key \"hidden_size\"" "config.json without hidden_size"

d=$out/dir-config-wrong-type
two_shards "$d"
config "$d"
sed -i 's/"hidden_size": 8/"hidden_size": "8"/' "$d/config.json"
case_ dir dir-config-wrong-type - EINVAL "\"hidden_size\" is a string" "hidden_size given as a string"

d=$out/dir-config-negative
two_shards "$d"
config "$d"
sed -i 's/"n_routed_experts": 4/"n_routed_experts": -4/' "$d/config.json"
case_ dir dir-config-negative - EINVAL "n_routed_experts" "n_routed_experts -4"

d=$out/dir-config-bool-type
two_shards "$d"
config "$d"
sed -i 's/"norm_topk_prob": false/"norm_topk_prob": 0/' "$d/config.json"
case_ dir dir-config-bool-type - EINVAL "norm_topk_prob" "norm_topk_prob given as 0, not false"

d=$out/dir-config-scoring
two_shards "$d"
config "$d"
sed -i 's/"softmax"/"relu"/' "$d/config.json"
case_ dir dir-config-scoring - EINVAL "scoring_func" "scoring_func \"relu\""

d=$out/dir-config-topk
two_shards "$d"
config "$d"
sed -i 's/"num_experts_per_tok": 2/"num_experts_per_tok": 5/' "$d/config.json"
case_ dir dir-config-topk - EINVAL "num_experts_per_tok" "top-5 of 4 experts"

d=$out/dir-config-fp8-block
two_shards "$d"
config "$d" '"quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 64]}'
case_ dir dir-config-fp8-block - EINVAL "weight_block_size [64, 64]" "fp8 with 64x64 blocks"

d=$out/dir-config-not-json
two_shards "$d"
config "$d"
sed -i 's/"vocab_size": 16/"vocab_size": 16,/' "$d/config.json"
case_ dir dir-config-not-json - EINVAL "config.json: at byte" "config.json with a trailing comma"

d=$out/dir-index-missing-file
two_shards "$d"
config "$d"
rm "$d/model-00002-of-00002.safetensors"
case_ dir dir-index-missing-file - ENOENT "model-00002-of-00002.safetensors: missing" "the index names a shard that is not there"

d=$out/dir-index-absent-entry
two_shards "$d" '/experts\.3\.up_proj/d'
config "$d"
sed -i 's/^\(  "model.layers.1.mlp.experts.2.up_proj.weight":"model-00002-of-00002.safetensors"\)/  "model.layers.1.mlp.experts.3.up_proj.weight":"model-00002-of-00002.safetensors",\n\1/' \
	"$d/model.safetensors.index.json"
case_ dir dir-index-absent-entry - ENOENT "missing tensor model.layers.1.mlp.experts.3.up_proj.weight (index says model-00002-of-00002.safetensors)" "the index lists a tensor its shard lacks"

d=$out/dir-index-wrong-shard
two_shards "$d"
config "$d"
sed -i 's/\("model.layers.1.mlp.gate.weight":"\)model-00001/\1model-00002/' "$d/model.safetensors.index.json"
case_ dir dir-index-wrong-shard - ENOENT "index says model-00002-of-00002.safetensors, it is in" "the index puts a tensor in the other shard"

d=$out/dir-index-traversal
two_shards "$d"
config "$d"
sed -i 's/"model-00002-of-00002.safetensors"/"..\/model-00002-of-00002.safetensors"/' "$d/model.safetensors.index.json"
case_ dir dir-index-traversal - EINVAL "is not a file name in the model directory" "a shard named ../model-00002-of-00002.safetensors"

d=$out/dir-index-no-weight-map
two_shards "$d"
config "$d"
sed -i 's/"weight_map"/"weights"/' "$d/model.safetensors.index.json"
case_ dir dir-index-no-weight-map - EINVAL "weight_map" "an index without weight_map"

d=$out/dir-index-duplicate
two_shards "$d"
config "$d"
sed -i 's/^  "model.embed_tokens.weight"/  "model.layers.1.mlp.gate.weight":"model-00001-of-00002.safetensors",\n&/' "$d/model.safetensors.index.json"
case_ dir dir-index-duplicate - EINVAL "duplicate key \"model.layers.1.mlp.gate.weight\"" "an index listing a tensor twice"

d=$out/dir-duplicate-across-shards
two_shards "$d"
config "$d"
mapfile -t all < <(specs BF16 | grep -E 'experts\.[23]\.|shared_experts')
shard "$d/model-00002-of-00002.safetensors" "${all[@]}" "model.layers.$L.mlp.experts.0.up_proj.weight:BF16:$I,$H"
case_ dir dir-duplicate-across-shards - EINVAL "duplicate tensor model.layers.1.mlp.experts.0.up_proj.weight" "the same tensor in both shards"

d=$out/dir-bad-shard
two_shards "$d"
config "$d"
raw "$d/model-00002-of-00002.safetensors" '{"a":{'"$T"':[0,8]},"a":{'"$T"':[8,16]}}' 16
case_ dir dir-bad-shard - EINVAL "model-00002-of-00002.safetensors: JSON header: at byte" "a shard with a malformed header"

d=$out/dir-layer-shape
two_shards "$d" "s/\(experts\.1\.up_proj\.weight:BF16:\)$I,$H/\1$H,$I/"
config "$d"
case_ layer dir-layer-shape 1 EINVAL "model.layers.1.mlp.experts.1.up_proj.weight: shape [8, 4], config says [4, 8]" "an expert's up_proj transposed"

d=$out/dir-layer-dtype
two_shards "$d" 's/\(experts\.2\.down_proj\.weight:\)BF16/\1F32/'
config "$d"
case_ layer dir-layer-dtype 1 EINVAL "model.layers.1.mlp.experts.2.down_proj.weight: dtype F32, expected BF16" "one expert weight F32 among BF16"

d=$out/dir-layer-gate-dtype
two_shards "$d" 's/\(mlp\.gate\.weight:\)BF16/\1F16/'
config "$d"
case_ layer dir-layer-gate-dtype 1 EINVAL "model.layers.1.mlp.gate.weight: dtype F16" "an F16 router"

d=$out/dir-layer-missing
two_shards "$d" '/experts\.3\.up_proj/d'
config "$d"
case_ layer dir-layer-missing 1 ENOENT "missing tensor model.layers.1.mlp.experts.3.up_proj.weight" "an expert tensor in neither shard nor index"

d=$out/dir-layer-shared-shape
two_shards "$d" "s/\(shared_experts\.down_proj\.weight:BF16:\)$H,$I/\1$H,8/"
config "$d"
case_ layer dir-layer-shared-shape 1 EINVAL "shared_experts.down_proj.weight: shape [8, 8], config says [8, 4]" "shared down_proj wider than n_shared_experts * moe_intermediate_size"

d=$out/dir-layer-missing-scale
mkdir -p "$d"
mapfile -t all < <(specs F8_E4M3 scales | sed '/experts\.1\.down_proj\.weight_scale_inv/d')
shard "$d/model.safetensors" "${all[@]}"
config "$d" '"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}'
case_ layer dir-layer-missing-scale 1 ENOENT "missing tensor model.layers.1.mlp.experts.1.down_proj.weight_scale_inv" "fp8 without one weight_scale_inv"

d=$out/dir-layer-fp8-unsaid
mkdir -p "$d"
mapfile -t all < <(specs F8_E4M3 scales)
shard "$d/model.safetensors" "${all[@]}"
config "$d"
case_ layer dir-layer-fp8-unsaid 1 EINVAL "has no fp8 quantization_config" "F8_E4M3 weights, config.json without quantization_config"

d=$out/dir-layer-no-bias
mkdir -p "$d"
mapfile -t all < <(specs BF16)
shard "$d/model.safetensors" "${all[@]}"
config "$d"
sed -i 's/"greedy"/"noaux_tc"/' "$d/config.json"
case_ layer dir-layer-no-bias 1 ENOENT "missing tensor model.layers.1.mlp.gate.e_score_correction_bias" "topk_method noaux_tc without e_score_correction_bias"

cat >>"$readme" <<'EOF'

Cases that need big files are in tests/unit/test_model.c instead (a
header length above the 100 MiB cap, on a sparse file), as are the JSON
unit cases and the round trips of models written by the test itself.
EOF
