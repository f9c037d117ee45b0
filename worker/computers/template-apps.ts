/** What each template has installed before any selected_apps, as GET /apps reports it. */
export const TEMPLATE_APPS = {
  'miosa-desktop': ['python3', 'pip', 'curl', 'wget', 'git', 'vim', 'jq', 'htop', 'tree', 'zip', 'unzip', 'sudo'],
} as const;
