// Checks the ThreadSanitizer build itself: with tsan_absl_annotations.cc,
// data handed over through absl::Mutex, Mutex::Await and absl::Notification
// must not be reported ("guarded"), and the same handover without them must
// be ("racy"). Without the first, the batcher tests would drown in false
// reports; without the second, they could pass because TSan saw nothing.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

void WaitRelaxed(const std::atomic<bool>& flag) {
  while (!flag.load(std::memory_order_relaxed)) usleep(100);
}

void Guarded() {
  {  // written and read under the mutex
    absl::Mutex mu;
    long value = 0;
    std::atomic<bool> written{false};
    std::thread writer([&] {
      absl::MutexLock lock(&mu);
      value = 1;
      written.store(true, std::memory_order_relaxed);
    });
    WaitRelaxed(written);
    long seen;
    {
      absl::MutexLock lock(&mu);
      seen = value;
    }
    writer.join();
    std::printf("mutex: %ld\n", seen);
  }
  {  // Await wakes on a condition another thread made true
    absl::Mutex mu;
    long value = 0;
    bool ready = false;
    std::thread writer([&] {
      usleep(10000);
      value = 2;
      absl::MutexLock lock(&mu);
      ready = true;
    });
    mu.Lock();
    mu.Await(absl::Condition(&ready));
    mu.Unlock();
    std::printf("await: %ld\n", value);
    writer.join();
  }
  {  // Notify / WaitForNotification, with and without having to block
    for (int delay_us : {0, 10000}) {
      absl::Notification done;
      long value = 0;
      std::thread writer([&] {
        usleep(delay_us);
        value = 3;
        done.Notify();
      });
      if (delay_us == 0) usleep(10000);
      done.WaitForNotification();
      std::printf("notification: %ld\n", value);
      writer.join();
    }
  }
}

void Racy() {
  long value = 0;
  std::atomic<bool> written{false};
  std::thread writer([&] {
    value = 1;
    written.store(true, std::memory_order_relaxed);
  });
  WaitRelaxed(written);
  std::printf("racy: %ld\n", value);
  writer.join();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "guarded") == 0) {
    Guarded();
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "racy") == 0) {
    Racy();
    return 0;
  }
  std::fprintf(stderr, "usage: %s guarded|racy\n", argv[0]);
  return 2;
}
