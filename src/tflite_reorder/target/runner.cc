// tflite-reorder's target runner: TFLM's MicroInterpreter built for a Cortex-M, run under
// `qemu-arm -cpu <arch>` with semihosting (newlib's rdimon: files and stdout on the host).
//
//   runner MODEL ARENA_BYTES [IN0 IN1 ...]
//
// Loads MODEL, plans it with a RecordingMicroAllocator in an ARENA_BYTES arena, loads each
// input file (raw little-endian tensor bytes) into the matching input, invokes once and
// writes every output to out<i>.bin in the working folder. Then plans the model a second
// time with a GreedyMemoryPlanner that logs every buffer TFLM hands it (tensors and kernel
// scratch buffers, with their lifetimes and offline offsets) and the offsets it chose.
// Every result line starts with "@ " so that TFLM's own log lines never mix with them.
// Exit codes: 0 ok, 2 bad arguments or files, 3 TFLM refused the model, 4 arena too small.

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tensorflow/lite/micro/compatibility.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/recording_micro_allocator.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "runner_ops.h"  // generated: kRunnerOpCount and AddRunnerOps(resolver)

namespace {

using Resolver = tflite::MicroMutableOpResolver<kRunnerOpCount>;

// A greedy planner that reports what it was asked to place; TFLM plans exactly as usual.
class LoggingPlanner : public tflite::GreedyMemoryPlanner {
 public:
  TfLiteStatus AddBuffer(int size, int first, int last) override {
    std::printf("@ buffer %d %d %d -1\n", size, first, last);
    return tflite::GreedyMemoryPlanner::AddBuffer(size, first, last);
  }
  TfLiteStatus AddBuffer(int size, int first, int last, int offline) override {
    std::printf("@ buffer %d %d %d %d\n", size, first, last, offline);
    return tflite::GreedyMemoryPlanner::AddBuffer(size, first, last, offline);
  }

 private:
  TF_LITE_REMOVE_VIRTUAL_DELETE
};

unsigned char* Aligned(size_t bytes) {
  // 16-byte alignment for the flatbuffer and the arena, without aligned_alloc.
  unsigned char* raw = static_cast<unsigned char*>(std::malloc(bytes + 16));
  if (raw == nullptr) return nullptr;
  return raw + (16 - reinterpret_cast<size_t>(raw) % 16) % 16;
}

unsigned char* ReadFile(const char* path, size_t* size) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return nullptr;
  std::fseek(f, 0, SEEK_END);
  long n = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  unsigned char* data = Aligned(n > 0 ? static_cast<size_t>(n) : 1);
  if (data == nullptr || std::fread(data, 1, n, f) != static_cast<size_t>(n)) {
    std::fclose(f);
    return nullptr;
  }
  std::fclose(f);
  *size = static_cast<size_t>(n);
  return data;
}

void PrintBreakdown(const tflite::RecordingMicroAllocator& allocator) {
  static const char* const kNames[] = {
      "eval_tensor", "persistent_tensor", "persistent_quantization", "persistent_buffer",
      "variable_buffer", "node_and_registration", "op_data"};
  for (int i = 0; i < 7; ++i) {
    tflite::RecordedAllocation a =
        allocator.GetRecordedAllocation(static_cast<tflite::RecordedAllocationType>(i));
    std::printf("@ breakdown %s %u %u %u\n", kNames[i], static_cast<unsigned>(a.requested_bytes),
                static_cast<unsigned>(a.used_bytes), static_cast<unsigned>(a.count));
  }
}

int LogPlan(const tflite::Model* model, const Resolver& resolver, size_t arena_size) {
  unsigned char* arena = Aligned(arena_size);
  if (arena == nullptr) return 2;
  static LoggingPlanner planner;
  tflite::MicroAllocator* allocator =
      tflite::MicroAllocator::Create(arena, arena_size, &planner);
  tflite::MicroInterpreter interpreter(model, resolver, allocator);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 3;
  for (int i = 0; i < planner.GetBufferCount(); ++i) {
    int offset = -1;
    planner.GetOffsetForBuffer(i, &offset);
    std::printf("@ offset %d %d\n", i, offset);
  }
  std::printf("@ plan_head %u\n", static_cast<unsigned>(planner.GetMaximumMemorySize()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::printf("@ error usage: runner MODEL ARENA_BYTES [INPUT...]\n");
    return 2;
  }
  size_t model_size = 0;
  unsigned char* model_data = ReadFile(argv[1], &model_size);
  if (model_data == nullptr) {
    std::printf("@ error cannot read %s\n", argv[1]);
    return 2;
  }
  const size_t arena_size = static_cast<size_t>(std::strtoul(argv[2], nullptr, 10));
  unsigned char* arena = Aligned(arena_size);
  if (arena == nullptr) {
    std::printf("@ error cannot allocate %u bytes\n", static_cast<unsigned>(arena_size));
    return 2;
  }
  const tflite::Model* model = tflite::GetModel(model_data);
  static Resolver resolver;
  AddRunnerOps(resolver);

  tflite::RecordingMicroAllocator* allocator =
      tflite::RecordingMicroAllocator::Create(arena, arena_size);
  if (allocator == nullptr) {
    std::printf("@ error arena too small for the allocator\n");
    return 4;
  }
  tflite::MicroInterpreter interpreter(model, resolver, allocator);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    std::printf("@ error AllocateTensors failed\n");
    return 3;
  }
  const auto* memory = allocator->GetSimpleMemoryAllocator();
  std::printf("@ total %u\n", static_cast<unsigned>(memory->GetUsedBytes()));
  std::printf("@ head %u\n", static_cast<unsigned>(memory->GetNonPersistentUsedBytes()));
  std::printf("@ tail %u\n", static_cast<unsigned>(memory->GetPersistentUsedBytes()));
  std::printf("@ arena_used %u\n", static_cast<unsigned>(interpreter.arena_used_bytes()));
  PrintBreakdown(*allocator);

  const int n_inputs = argc - 3;
  if (n_inputs != static_cast<int>(interpreter.inputs_size()) && n_inputs != 0) {
    std::printf("@ error %d input files for %u inputs\n", n_inputs,
                static_cast<unsigned>(interpreter.inputs_size()));
    return 2;
  }
  for (int i = 0; i < n_inputs; ++i) {
    TfLiteTensor* tensor = interpreter.input(i);
    size_t size = 0;
    unsigned char* data = ReadFile(argv[3 + i], &size);
    if (data == nullptr || size != tensor->bytes) {
      std::printf("@ error input %d: %u bytes, the model wants %u\n", i,
                  static_cast<unsigned>(size), static_cast<unsigned>(tensor->bytes));
      return 2;
    }
    std::memcpy(tensor->data.raw, data, size);
  }
  if (n_inputs > 0) {
    if (interpreter.Invoke() != kTfLiteOk) {
      std::printf("@ error Invoke failed\n");
      return 3;
    }
    for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
      const TfLiteTensor* tensor = interpreter.output(i);
      char name[32];
      std::snprintf(name, sizeof(name), "out%u.bin", static_cast<unsigned>(i));
      FILE* f = std::fopen(name, "wb");
      if (f == nullptr ||
          std::fwrite(tensor->data.raw, 1, tensor->bytes, f) != tensor->bytes) {
        std::printf("@ error cannot write %s\n", name);
        return 2;
      }
      std::fclose(f);
      std::printf("@ output %u %d %u\n", static_cast<unsigned>(i), static_cast<int>(tensor->type),
                  static_cast<unsigned>(tensor->bytes));
    }
  }
  const int plan = LogPlan(model, resolver, arena_size);
  if (plan != 0) {
    std::printf("@ error planning again failed\n");
    return plan;
  }
  std::printf("@ done\n");
  return 0;
}
