/** Facts about the test host that decide which outcome a test may demand. */
import { existsSync, readFileSync } from 'node:fs';

/** KVM inside a VM whose CPU shows no VMX/SVM is software-only (e.g. PVM): it crawls. */
export function softwareOnlyKvm(): boolean {
  try {
    const flags = new Set(/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? []);
    return existsSync('/dev/kvm') && flags.has('hypervisor') && !flags.has('vmx') && !flags.has('svm');
  } catch {
    return false;
  }
}
